"""What isscli reads and writes: checkpoints, atomic outputs, provenance, manifests and fingerprints, user JSON and
numbers, and the user-facing errors. Imports no other isscli layer."""
