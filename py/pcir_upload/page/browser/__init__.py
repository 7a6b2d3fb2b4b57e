"""Adapters that run only in the browser (Pyodide in a Web Worker): WebCrypto, fetch, File."""
