"""The ledger: one global RFC 6962 log of sealed executions, signed checkpoints, proofs,
export bundles and their offline verification (DESIGN §1, §4)."""
