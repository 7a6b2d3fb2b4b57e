"""The embedded receiver: serves the contribution page and takes its tus uploads."""

from pcir_upload.repository.receive.app import create_app, run

__all__ = ["create_app", "run"]
