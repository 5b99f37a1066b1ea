//go:build !unix

package metering

import "os"

// lockDir only opens the lock file where flock is not available: the
// caller must not point two reporters at one spool directory.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

func unlockDir(f *os.File) error { return f.Close() }
