// Package integrityview is the integrity projection: it builds the Merkle tree of the
// ledger in global log order (leaf i = i-th record), keeps in its own Pebble directory
// what proofs need (every complete node, event_id → leaf index, position → leaf index)
// and the signed checkpoints it publishes, and answers checkpoint and proof queries.
//
// Every replica computes the same tree from the same log; only the checkpoints'
// publication times differ.
package integrityview

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/projections"
	"github.com/stanceledger/ledger/store"
)

// Name is the projection's name: its directory under <data>/views/ and its name in
// health and metrics.
const Name = "integrity"

// Schema is the version of the read model's key layout. A read model written with
// another version is discarded and rebuilt from the log (roots do not change; the
// checkpoints published before are lost from this replica, not from their holders).
const Schema = 1

// Options tune publication. A nil *Options means the defaults.
type Options struct {
	// Every publishes a checkpoint as soon as this many records were applied since the
	// last one; default 1000.
	Every uint64
	// Interval publishes a checkpoint of whatever was applied, at least this often while
	// Run runs; default 10 s.
	Interval time.Duration
}

// View is the integrity read model. Apply is called by the projections runner; the
// query methods are safe for concurrent use with it and with each other.
type View struct {
	db       *pebble.DB
	log      *slog.Logger
	signer   *integrity.Signer
	opts     Options
	progress *projections.Progress

	// writeMu serialises Apply and publish, the only writers.
	writeMu sync.Mutex

	mu     sync.RWMutex // guards the fields below
	tree   *integrity.Tree
	latest *integrity.Checkpoint // nil before the first publication
	closed bool
}

// Open opens (or creates) the integrity read model in dir. Checkpoints are signed
// with signer, whose name is the log's origin. A read model whose checkpoints were
// signed for another origin is refused: changing the origin needs a new directory.
func Open(dir string, signer *integrity.Signer, log *slog.Logger, opts *Options) (*View, error) {
	return openFS(vfs.Default, dir, signer, log, opts)
}

// openFS is Open on any file system (tests crash an in-memory one).
func openFS(fs vfs.FS, dir string, signer *integrity.Signer, log *slog.Logger, opts *Options) (*View, error) {
	if signer == nil {
		return nil, errors.New("integrity view: no signer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &View{log: log, signer: signer}
	if opts != nil {
		v.opts = *opts
	}
	if v.opts.Every == 0 {
		v.opts.Every = 1000
	}
	if v.opts.Interval <= 0 {
		v.opts.Interval = 10 * time.Second
	}
	db, err := openModel(fs, dir, log)
	if err != nil {
		return nil, err
	}
	v.db = db
	applied, tree, err := readState(db)
	if err == nil {
		v.latest, err = v.lastCheckpoint()
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if v.latest != nil && v.latest.Origin != signer.Origin() {
		db.Close()
		return nil, fmt.Errorf("integrity view %s holds checkpoints of origin %q, the signing key is for %q", dir, v.latest.Origin, signer.Origin())
	}
	v.tree = tree
	v.progress = projections.NewProgress(Name, applied)
	return v, nil
}

var (
	keySchema = []byte("m/schema")
	keyState  = []byte("m/state")
)

const (
	prefixNode       = 'n' // n level(1) index(8) → hash
	prefixEvent      = 'e' // e event_id → leaf index(8)
	prefixLeaf       = 'l' // l index(8) → commit(8) prepare(8) event_id
	prefixPosition   = 'p' // p commit(8) prepare(8) → leaf index(8)
	prefixCheckpoint = 'c' // c size(8) → signed note
)

func openModel(fs vfs.FS, dir string, log *slog.Logger) (*pebble.DB, error) {
	// Pebble creates dir and its missing parents, and syncs their entries, so a
	// power loss cannot take the view (and checkpoints it served) away. Proofs
	// read nodes all over the tree; the upper levels are hot.
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: projections.PebbleLogger{Log: log}, CacheSize: 32 << 20})
	if err != nil {
		return nil, fmt.Errorf("open integrity view %s: %w", dir, err)
	}
	schema, err := get(db, keySchema)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		if err := db.Set(keySchema, []byte(strconv.Itoa(Schema)), pebble.Sync); err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	case err != nil:
		db.Close()
		return nil, err
	case string(schema) != strconv.Itoa(Schema):
		log.Warn("integrity view has another schema version; rebuilding it from the log",
			"dir", dir, "found", string(schema), "want", Schema)
		db.Close()
		if err := fs.RemoveAll(dir); err != nil {
			return nil, err
		}
		return openModel(fs, dir, log)
	}
	return db, nil
}

// readState reads the checkpoint (applied position) and the tree's right edge, saved
// together by every Apply.
func readState(db *pebble.DB) (ledger.Position, *integrity.Tree, error) {
	b, err := get(db, keyState)
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.Position{}, integrity.NewTree(), nil
	}
	if err != nil {
		return ledger.Position{}, nil, err
	}
	if len(b) < 24 || (len(b)-24)%integrity.HashSize != 0 {
		return ledger.Position{}, nil, fmt.Errorf("integrity view: corrupt state of %d bytes", len(b))
	}
	pos := ledger.Position{Commit: binary.BigEndian.Uint64(b), Prepare: binary.BigEndian.Uint64(b[8:])}
	size := binary.BigEndian.Uint64(b[16:])
	var hashes [][]byte
	for rest := b[24:]; len(rest) > 0; rest = rest[integrity.HashSize:] {
		hashes = append(hashes, rest[:integrity.HashSize])
	}
	tree, err := integrity.RestoreTree(size, hashes)
	if err != nil {
		return ledger.Position{}, nil, fmt.Errorf("integrity view: corrupt state: %w", err)
	}
	return pos, tree, nil
}

func encodeState(pos ledger.Position, tree *integrity.Tree) []byte {
	b := make([]byte, 0, 24+64*integrity.HashSize)
	b = binary.BigEndian.AppendUint64(b, pos.Commit)
	b = binary.BigEndian.AppendUint64(b, pos.Prepare)
	b = binary.BigEndian.AppendUint64(b, tree.Size())
	for _, h := range tree.Hashes() {
		b = append(b, h...)
	}
	return b
}

// Name returns Name.
func (v *View) Name() string { return Name }

// Progress returns the tracker of the view's applied position (for WaitFor).
func (v *View) Progress() *projections.Progress { return v.progress }

// VerifierKey returns the verifier key of the log's checkpoints, in note format.
func (v *View) VerifierKey() string { return v.signer.VerifierKey() }

// Origin returns the log's origin: the first line of every checkpoint.
func (v *View) Origin() string { return v.signer.Origin() }

// Apply appends records, which come in log order right after the checkpoint, as the
// next leaves; stores the nodes they complete, their event_id and position indexes, a
// signed checkpoint each time Every records have been applied since the last one, and
// the new applied position, in one atomic commit (synced only when it holds a
// checkpoint: see the comment in the body). On error nothing of the batch
// is applied. A record at or before the applied position is an error.
func (v *View) Apply(records []store.Record) error {
	if len(records) == 0 {
		return nil
	}
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	v.mu.RLock()
	tree, err := integrity.RestoreTree(v.tree.Size(), v.tree.Hashes())
	lastSize := uint64(0)
	if v.latest != nil {
		lastSize = v.latest.Size
	}
	closed := v.closed
	v.mu.RUnlock()
	if closed {
		return ledger.ErrClosed
	}
	if err != nil {
		return err
	}
	applied := v.progress.Applied()
	b := v.db.NewBatch()
	defer b.Close()
	var (
		visitErr error
		latest   *integrity.Checkpoint
		key      []byte
	)
	visit := func(id integrity.NodeID, h []byte) {
		if visitErr == nil {
			visitErr = b.Set(nodeKey(id), h, nil)
		}
	}
	for _, rec := range records {
		if !applied.Less(rec.Position) {
			return fmt.Errorf("integrity view: record %s at position %s, not after the applied position %s", rec.EventID, rec.Position, applied)
		}
		applied = rec.Position
		leaf := integrity.Leaf{EventID: rec.EventID, Stream: rec.Stream, Type: rec.Type, Data: rec.Data, Metadata: rec.Metadata}
		h, err := leaf.Hash()
		if err != nil {
			return fmt.Errorf("integrity view: leaf of %s: %w", rec.EventID, err)
		}
		index := tree.Size()
		if err := tree.Append(h, visit); err != nil {
			return err
		}
		if visitErr != nil {
			return visitErr
		}
		idx := binary.BigEndian.AppendUint64(nil, index)
		pos := posBytes(rec.Position)
		key = append(append(key[:0], prefixEvent), rec.EventID...)
		if err := b.Set(key, idx, nil); err != nil {
			return err
		}
		if err := b.Set(append([]byte{prefixLeaf}, idx...), append(pos, rec.EventID...), nil); err != nil {
			return err
		}
		if err := b.Set(append([]byte{prefixPosition}, pos[:16]...), idx, nil); err != nil {
			return err
		}
		if tree.Size()-lastSize >= v.opts.Every {
			cp, err := v.signer.Sign(tree.Size(), tree.Root())
			if err != nil {
				return err
			}
			if err := b.Set(checkpointKey(cp.Size), cp.Note, nil); err != nil {
				return err
			}
			latest, lastSize = cp, cp.Size
		}
	}
	if err := b.Set(keyState, encodeState(applied, tree), nil); err != nil {
		return err
	}
	// No sync, as in the positions view: the log is durable and the view is a
	// deterministic function of it, so a crash that forgets a suffix of batches only
	// makes the runner apply them again, to the same nodes and, since ed25519 is
	// deterministic, the same checkpoint notes. But a batch that holds a checkpoint
	// is synced before the checkpoint is served: one served and then forgotten would
	// leave the restarted view serving an older latest checkpoint until it has applied
	// the batch again, and an auditor that saw the newer one would see the log roll
	// back (ledgerctl audit refuses it; e2e's TestCheckpointsSurviveKill9 met it).
	sync := pebble.NoSync
	if latest != nil {
		sync = pebble.Sync
	}
	if err := b.Commit(sync); err != nil {
		return fmt.Errorf("integrity view: commit: %w", err)
	}
	v.mu.Lock()
	v.tree = tree
	if latest != nil {
		v.latest = latest
	}
	v.mu.Unlock()
	v.progress.Advance(applied)
	return nil
}

// Publish signs and stores a checkpoint of everything applied, unless the latest
// published checkpoint already covers it, and returns the latest checkpoint (nil when
// the log is empty and nothing was ever published).
func (v *View) Publish() (*integrity.Checkpoint, error) {
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	v.mu.RLock()
	tree, latest, closed := v.tree, v.latest, v.closed
	v.mu.RUnlock()
	if closed {
		return nil, ledger.ErrClosed
	}
	if tree.Size() == 0 || latest != nil && latest.Size >= tree.Size() {
		return latest, nil
	}
	cp, err := v.signer.Sign(tree.Size(), tree.Root())
	if err != nil {
		return nil, err
	}
	if err := v.db.Set(checkpointKey(cp.Size), cp.Note, pebble.Sync); err != nil {
		return nil, fmt.Errorf("integrity view: store checkpoint: %w", err)
	}
	v.mu.Lock()
	v.latest = cp
	v.mu.Unlock()
	v.log.Debug("checkpoint published", "size", cp.Size)
	return cp, nil
}

// Run publishes a checkpoint every Interval while records keep arriving, until ctx
// ends; then it returns nil. Close publishes the last one.
func (v *View) Run(ctx context.Context) error {
	t := time.NewTicker(v.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := v.Publish(); err != nil && !errors.Is(err, ledger.ErrClosed) {
				v.log.Error("integrity: publishing a checkpoint failed", "err", err)
			}
		}
	}
}

// Close publishes a checkpoint of everything applied and closes the read model. Later
// calls fail with an error matching ledger.ErrClosed.
func (v *View) Close() error {
	_, perr := v.Publish()
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return ledger.ErrClosed
	}
	v.closed = true
	v.mu.Unlock()
	return errors.Join(perr, v.db.Close())
}

// Size returns the number of leaves applied.
func (v *View) Size() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.tree.Size()
}

// Latest returns the latest published checkpoint, or an error matching
// ledger.ErrNotFound when none has been published yet.
func (v *View) Latest() (*integrity.Checkpoint, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.latest == nil {
		return nil, fmt.Errorf("%w: no checkpoint published yet", ledger.ErrNotFound)
	}
	return v.latest, nil
}

// Covering returns the smallest published checkpoint that covers every record at or
// before pos. When the view has applied pos but no published checkpoint covers it yet,
// one is published now. The caller waits for the view to apply pos first
// (Progress().WaitFor); a pos beyond what it has applied is an error matching
// ledger.ErrNotFound.
func (v *View) Covering(pos ledger.Position) (*integrity.Checkpoint, error) {
	if v.progress.Applied().Less(pos) {
		return nil, fmt.Errorf("%w: the integrity view has applied the log up to %s, not %s", ledger.ErrNotFound, v.progress.Applied(), pos)
	}
	need, err := v.countUpTo(pos)
	if err != nil {
		return nil, err
	}
	if need == 0 {
		need = 1 // position zero is covered by any checkpoint; take the first one
	}
	cp, err := v.checkpointAtLeast(need)
	if errors.Is(err, ledger.ErrNotFound) {
		if _, perr := v.Publish(); perr != nil {
			return nil, perr
		}
		cp, err = v.checkpointAtLeast(need)
	}
	return cp, err
}

// Checkpoint returns the published checkpoint of exactly size leaves, or an error
// matching ledger.ErrNotFound.
func (v *View) Checkpoint(size uint64) (*integrity.Checkpoint, error) {
	b, err := get(v.db, checkpointKey(size))
	if err != nil {
		return nil, fmt.Errorf("checkpoint of size %d: %w", size, err)
	}
	return v.parse(b)
}

// Leaf says where a record is in the tree.
type Leaf struct {
	Index    uint64
	EventID  string
	Position ledger.Position
}

// LeafByEventID finds the leaf of the record stored under eventID, or returns an error
// matching ledger.ErrNotFound.
func (v *View) LeafByEventID(eventID string) (Leaf, error) {
	b, err := get(v.db, append([]byte{prefixEvent}, eventID...))
	if err != nil {
		return Leaf{}, fmt.Errorf("event_id %q: %w", eventID, err)
	}
	if len(b) != 8 {
		return Leaf{}, fmt.Errorf("integrity view: corrupt leaf index of %q", eventID)
	}
	return v.LeafAt(binary.BigEndian.Uint64(b))
}

// LeafAt returns leaf index, or an error matching ledger.ErrNotFound when the tree is
// not that large.
func (v *View) LeafAt(index uint64) (Leaf, error) {
	b, err := get(v.db, append([]byte{prefixLeaf}, binary.BigEndian.AppendUint64(nil, index)...))
	if err != nil {
		return Leaf{}, fmt.Errorf("leaf %d: %w", index, err)
	}
	if len(b) < 16 {
		return Leaf{}, fmt.Errorf("integrity view: corrupt leaf %d", index)
	}
	return Leaf{
		Index:    index,
		Position: ledger.Position{Commit: binary.BigEndian.Uint64(b), Prepare: binary.BigEndian.Uint64(b[8:])},
		EventID:  string(b[16:]),
	}, nil
}

// InclusionProof returns the proof that leaf index is in the tree of size leaves.
// size must not exceed Size(); index must be below size (ledger.ErrInvalid otherwise).
func (v *View) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if err := v.checkSize(size); err != nil {
		return nil, err
	}
	return integrity.InclusionProof(ctx, nodeReader{v.db}, index, size)
}

// ConsistencyProof returns the proof that the tree of size1 leaves is a prefix of the
// tree of size2. It requires size1 <= size2 <= Size() (ledger.ErrInvalid otherwise).
func (v *View) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if err := v.checkSize(size2); err != nil {
		return nil, err
	}
	return integrity.ConsistencyProof(ctx, nodeReader{v.db}, size1, size2)
}

func (v *View) checkSize(size uint64) error {
	if n := v.Size(); size > n {
		return ledger.Invalid("tree_size", "the tree has %d leaves, not %d", n, size)
	}
	return nil
}

// countUpTo returns the number of leaves at positions <= pos.
func (v *View) countUpTo(pos ledger.Position) (uint64, error) {
	it, err := v.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixPosition},
		UpperBound: []byte{prefixPosition + 1},
	})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	// The last key <= pos is the last key < pos's successor: pos with one more byte.
	seek := append(append([]byte{prefixPosition}, posBytes(pos)...), 0)
	if !it.SeekLT(seek) {
		return 0, it.Error()
	}
	if len(it.Value()) != 8 {
		return 0, errors.New("integrity view: corrupt position index")
	}
	return binary.BigEndian.Uint64(it.Value()) + 1, nil
}

func (v *View) checkpointAtLeast(size uint64) (*integrity.Checkpoint, error) {
	it, err := v.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixCheckpoint},
		UpperBound: []byte{prefixCheckpoint + 1},
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if !it.SeekGE(checkpointKey(size)) {
		if err := it.Error(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: no checkpoint of %d or more leaves published yet", ledger.ErrNotFound, size)
	}
	return v.parse(it.Value())
}

func (v *View) lastCheckpoint() (*integrity.Checkpoint, error) {
	it, err := v.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixCheckpoint},
		UpperBound: []byte{prefixCheckpoint + 1},
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if !it.Last() {
		return nil, it.Error()
	}
	return v.parse(it.Value())
}

// parse opens a stored checkpoint with the log's own key: what it stored, it signed.
func (v *View) parse(note []byte) (*integrity.Checkpoint, error) {
	ver, err := integrity.NewVerifier(v.signer.VerifierKey())
	if err != nil {
		return nil, err
	}
	cp, err := integrity.OpenCheckpoint(bytes.Clone(note), ver)
	if err != nil {
		return nil, fmt.Errorf("integrity view: stored checkpoint: %w", err)
	}
	return cp, nil
}

func nodeKey(id integrity.NodeID) []byte {
	k := make([]byte, 0, 10)
	k = append(k, prefixNode, byte(id.Level))
	return binary.BigEndian.AppendUint64(k, id.Index)
}

func checkpointKey(size uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixCheckpoint}, size)
}

func posBytes(p ledger.Position) []byte {
	b := make([]byte, 0, 16)
	b = binary.BigEndian.AppendUint64(b, p.Commit)
	return binary.BigEndian.AppendUint64(b, p.Prepare)
}

// get returns a copy of the value under key, or an error matching ledger.ErrNotFound.
func get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ledger.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// nodeReader serves stored node hashes to integrity's proof builders.
type nodeReader struct{ db *pebble.DB }

func (r nodeReader) ReadNodes(ctx context.Context, ids []integrity.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := get(r.db, nodeKey(id))
		if err != nil {
			return nil, fmt.Errorf("node %d/%d: %w", id.Level, id.Index, err)
		}
		out[i] = h
	}
	return out, nil
}
