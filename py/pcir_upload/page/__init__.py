"""The page's floor: what runs in the patient's browser, in stages that data flows through
one way: disc (read and recognise), package (ZIP and manifest), seal (HPKE envelope), upload
(tus). Pure Python, tested on CPython; `browser/` adapts it to WebCrypto, fetch and File."""
