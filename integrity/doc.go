// Package integrity makes the ledger tamper-evident: a Merkle tree over the log in global
// order (RFC 6962, github.com/transparency-dev/merkle), checkpoints in the C2SP
// tlog-checkpoint format signed as C2SP signed notes with ed25519
// (golang.org/x/mod/sumdb/note), inclusion and consistency proofs, and the pure
// functions that verify them.
//
// Leaf i of the tree is the i-th ledger record in global log order. Its hash is the
// RFC 6962 leaf hash of the record's stored bytes in the layout of [Leaf.Bytes],
// documented in docs/integrity.md so that an auditor can recompute it in any language.
//
// Nothing here trusts the server: a verifier needs only the log (or an export of it),
// a checkpoint and the verifier key of the log.
package integrity
