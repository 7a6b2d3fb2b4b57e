"""`pcir-upload review`: the operator's page, where a person decides what leaves review/."""
