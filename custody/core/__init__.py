"""The pure core: canonical JSON, keys and signatures, entries, the Merkle tree, signed notes,
proofs and the replay of the log. Bytes and values in, values out: no I/O, no clock."""
