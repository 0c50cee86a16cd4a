package server_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkFdatasync is the floor under durable appends on the disk that holds
// b.TempDir(): 256-byte writes each followed by fdatasync, appended to a growing file
// (each sync also commits the new size), and overwriting preallocated space (as
// Pebble's recycled WAL files do).
func BenchmarkFdatasync(b *testing.B) {
	for _, mode := range []string{"append", "overwrite"} {
		b.Run(mode, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			const span = 16 << 20
			if mode == "overwrite" {
				if _, err := f.WriteAt(make([]byte, span), 0); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]byte, 256)
			var off int64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := f.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if off += int64(len(buf)); mode == "overwrite" && off+int64(len(buf)) > span {
					off = 0
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "syncs/s")
		})
	}
}
