"""The repository's floor: what runs on its own machines, in stages: receive (the tus
endpoint and its store), unpack (open, verify, write the files), and the operator's keys."""
