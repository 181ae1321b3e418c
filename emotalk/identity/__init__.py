"""An identity: its checkpoint folder, where identities are stored, and fitting one from a dataset."""
