package esdb

import (
	"strings"
	"testing"
)

func TestSettingsRisks(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		user     string
		want     []string // substrings, one per risk, in order
		bad      bool
	}{
		{"locked down", `{"$userStreamAcl":{"$r":"$all","$w":["ledger-writers"],"$d":"$admins","$mw":"$admins"}}`, "ledger",
			[]string{"can read $settings"}, false},
		{"default ACL", `{}`, "ledger",
			[]string{"can read $settings", `sets no "$d"`, `sets no "$mw"`}, false},
		{"everyone deletes", `{"$userStreamAcl":{"$d":"$all","$mw":"$admins"}}`, "ledger",
			[]string{"can read $settings", `"$d" grants [$all]`}, false},
		{"the user may truncate", `{"$userStreamAcl":{"$d":"$admins","$mw":["ops","ledger"]}}`, "ledger",
			[]string{"can read $settings", `"$mw" grants [ops ledger]`}, false},
		{"not JSON", `{`, "ledger", []string{"can read $settings"}, true},
		{"bad role list", `{"$userStreamAcl":{"$d":3,"$mw":"$admins"}}`, "ledger", []string{"can read $settings"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := settingsRisks([]byte(tc.settings), tc.user)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, want error %v", err, tc.bad)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("risks = %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("risk %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}
