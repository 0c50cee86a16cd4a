package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// settledSuffix names the directory a bulk build is written out to (settleBulk),
// and, with tablesSuffix, the directory of the tables it ingests.
const (
	settledSuffix = ".settled"
	tablesSuffix  = ".tables"
)

// settleBulk writes a finished bulk build out as the ordinary model it becomes, in
// <dir>.settled: the build is cut into key ranges (settleRanges), each range is read
// in order and written as one table (a range of versions: two, with the current
// keys of its pairs, derived from the versions), on GOMAXPROCS goroutines at once,
// and the tables are ingested into a fresh DB, where they land in the bottom level
// with nothing left to compact. (Compacting the build in place would be one
// compaction on one core, most of the time a build takes.) The build itself is not
// changed; queries go on against it meanwhile. The caller holds mu, for reading at
// least, and no Apply runs; swapSettled then puts the written model in the build's
// place.
func (p *Positions) settleBulk() error {
	if c := p.compaction; c != nil {
		<-c.done // a compaction of the bulk build still running
		p.compaction = nil
		if c.err != nil {
			return fmt.Errorf("compact bulk build: %w", c.err)
		}
	}
	dst, tables := p.dir+settledSuffix, p.dir+settledSuffix+tablesSuffix
	for _, d := range []string{dst, tables} {
		if err := p.fs.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := p.fs.MkdirAll(tables, 0o755); err != nil {
		return err
	}
	defer p.fs.RemoveAll(tables)

	workers := runtime.GOMAXPROCS(0)
	ranges, err := settleRanges(p.db, 4*workers)
	if err != nil {
		return fmt.Errorf("settle bulk build: %w", err)
	}
	opts := modelOptions(p.fs, nil, p.log, false, nil) // nothing is read from it
	db, err := pebble.Open(dst, opts)
	if err != nil {
		return fmt.Errorf("settle bulk build: %w", err)
	}
	opts.EnsureDefaults()
	wopts := opts.MakeWriterOptions(len(opts.Levels)-1, db.TableFormat())

	// The workers take the ranges in turn, the versions first (settleRanges). The
	// ranges are disjoint: every table lands in the bottom level.
	paths := make([][]string, len(ranges))
	errs := make([]error, len(ranges))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(ranges)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(ranges); i = int(next.Add(1) - 1) {
				paths[i], errs[i] = ranges[i].write(p.db, p.fs, filepath.Join(tables, fmt.Sprintf("%06d", i)), wopts)
			}
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	if written := slices.Concat(paths...); err == nil && len(written) > 0 {
		err = db.Ingest(context.Background(), written)
	}
	err = errors.Join(err, db.Close())
	if err != nil {
		return fmt.Errorf("settle bulk build: %w", err)
	}
	p.settled = true
	return nil
}

// swapSettled puts the model settleBulk wrote in place of the bulk build and
// removes the build's marker; the build is closed, and removed in the background
// (removeLater). The caller holds mu for writing. A crash part-way leaves the
// marker, and the next open builds the model again.
func (p *Positions) swapSettled() error {
	db := p.db
	p.db = nil
	if err := db.Close(); err != nil {
		return err
	}
	retired, err := p.retire(p.dir)
	if err != nil {
		return err
	}
	if err := p.fs.Rename(p.dir+settledSuffix, p.dir); err != nil {
		return err
	}
	if err := syncDir(p.fs, filepath.Dir(p.dir)); err != nil {
		return err
	}
	p.bulk, p.settled = false, false
	p.removeLater(retired)
	return removeMarker(p.fs, p.dir)
}

// settleRange is a part of a bulk build that settleBulk writes out: the keys in
// [lower, upper) (nil: unbounded); for a range of versions (versions is set), also
// the current keys of its pairs, in a second table.
type settleRange struct {
	lower, upper []byte
	versions     bool
}

// settleRanges cuts the key space of the model into ranges for settleBulk, from
// the pair index: the versions in about n ranges of as many pairs each (most of a
// build), then the records, then the rest (metadata, the pair and topic indexes).
// Together they hold every key of the build once, but for current keys,
// which a bulk build does not write (applier): their range is left out, and
// settling derives them from the versions (writeVersions).
func settleRanges(db *pebble.DB, n int) ([]settleRange, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPair}, UpperBound: []byte{prefixPair + 1}})
	if err != nil {
		return nil, err
	}
	var pairs [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		pairs = append(pairs, bytes.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	// The versions from 'v' on, cut at pairs.
	var ranges []settleRange
	vr := settleRange{lower: []byte{prefixVersion}, versions: true}
	for i := 1; i < n; i++ {
		k := pairs[len(pairs)*i/n:]
		if len(k) == 0 {
			break
		}
		party, topic, err := splitPair(k[0])
		if err != nil {
			return nil, err
		}
		if v := versionPrefix(party, topic); bytes.Compare(v, vr.lower) > 0 {
			vr.upper = v
			ranges = append(ranges, vr)
			vr = settleRange{lower: vr.upper, versions: true}
		}
	}
	return append(ranges, vr,
		settleRange{lower: []byte{prefixRecord}, upper: []byte{prefixRecord + 1}},
		settleRange{upper: []byte{prefixCurrent}},
		settleRange{lower: []byte{prefixCurrent + 1}, upper: []byte{prefixRecord}},
		settleRange{lower: []byte{prefixRecord + 1}, upper: []byte{prefixVersion}},
	), nil
}

// write writes the range out of db as one table at path+".sst" (a range of
// versions: and its current keys at path+".c.sst"), synced, and returns the paths
// of the tables it wrote (an empty range leaves no file).
func (r settleRange) write(db *pebble.DB, fs vfs.FS, path string, wopts sstable.WriterOptions) ([]string, error) {
	out := &tableOut{fs: fs, path: path + ".sst", wopts: wopts}
	if !r.versions {
		return out.finish(copyRange(db, out, r.lower, r.upper))
	}
	cur := &tableOut{fs: fs, path: path + ".c.sst", wopts: wopts}
	paths, err := out.finish(writeVersions(db, out, cur, r))
	cpaths, err := cur.finish(err) // with err, if any
	if err != nil {
		return nil, err
	}
	return append(paths, cpaths...), nil
}

// copyRange writes the keys of db in [lower, upper) to out.
func copyRange(db *pebble.DB, out *tableOut, lower, upper []byte) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err == nil {
			err = out.set(it.Key(), v)
		}
		if err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// writeVersions writes the versions of r's pairs to out and their current keys to
// cur, in one pass: a pair's current version is its greatest open one, so the last
// open version the pass meets before the next pair's (both kinds of keys are in
// (party, topic) order) is written as its current key, with its value.
func writeVersions(db *pebble.DB, out, cur *tableOut, r settleRange) (err error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: r.lower, UpperBound: r.upper})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Close()) }()

	// pair is the version prefix of the pair the pass is in (its key without the
	// suffix), ckey that pair's current key; cval is the current value it has so
	// far (has).
	var pair, ckey, cval []byte
	has := false
	emit := func() error {
		if !has {
			return nil
		}
		has = false
		return cur.set(ckey, cval)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(k) < suffixLen+3 { // at least 'v', the two 0 bytes and the suffix
			return fmt.Errorf("version key %q: %w", k, errCorrupt)
		}
		if p := k[:len(k)-suffixLen]; !bytes.Equal(p, pair) {
			if err := emit(); err != nil {
				return err
			}
			pair = append(pair[:0], p...)
			// 'v' party 0 topic 0 → 'c' party 0 topic
			ckey = append(append(ckey[:0], prefixCurrent), pair[1:len(pair)-1]...)
		}
		if err := out.set(k, v); err != nil {
			return err
		}
		until, err := rowUntil(v)
		if err != nil {
			return fmt.Errorf("version %q: %w", k, err)
		}
		if until.IsZero() { // open: the greatest so far
			cval = append(append(cval[:0], k[len(k)-suffixLen:]...), v...)
			has = true
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return emit()
}

// tableOut is one table settleBulk writes, at path, created with its first key.
type tableOut struct {
	fs    vfs.FS
	path  string
	wopts sstable.WriterOptions
	w     *sstable.Writer
}

func (t *tableOut) set(k, v []byte) error {
	if t.w == nil {
		f, err := t.fs.Create(t.path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		t.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), t.wopts)
	}
	return t.w.Set(k, v)
}

// finish closes the table, synced, after the writing that ended with err, and
// returns its path: none when nothing was written or err is not nil.
func (t *tableOut) finish(err error) ([]string, error) {
	if t.w == nil {
		return nil, err
	}
	if cerr := t.w.Close(); err != nil || cerr != nil { // Close syncs and closes the file
		return nil, errors.Join(err, cerr)
	}
	return []string{t.path}, nil
}
