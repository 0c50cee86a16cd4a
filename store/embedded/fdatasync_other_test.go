//go:build !linux

package embedded_test

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
