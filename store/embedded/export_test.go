package embedded

import "github.com/cockroachdb/pebble/v2"

// SetLayoutVersionForTest overwrites the layout version of the closed store in dir.
func SetLayoutVersionForTest(dir string, v byte) error {
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{discard()}})
	if err != nil {
		return err
	}
	if err := db.Set(layoutKey, []byte{v}, pebble.Sync); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

// WriteForeignKeyForTest writes a key that no embedded store writes into a new Pebble
// database in dir.
func WriteForeignKeyForTest(dir string) error {
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{discard()}})
	if err != nil {
		return err
	}
	if err := db.Set([]byte("foreign"), []byte("x"), pebble.Sync); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}
