package embedded_test

import (
	"os"
	"syscall"
)

// fdatasync is what Pebble calls to sync its WAL on Linux.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
