"""pcir-upload: the contribution client and receiver of a patient-contributed image repository."""

__version__ = "0.1.0"
