package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	ledger "github.com/stanceledger/ledger"
)

// DeleteRisks says, as far as the connection's user can tell, why that user may be
// able to delete or truncate ledger streams; an empty list means no risk was seen.
// ledgerd logs each as a warning at start. The checks:
//
//   - tls=false: an EventStoreDB run with --insecure has no access control at all.
//   - The user can read $settings (by default only $admins can): an admin may delete
//     any stream and start scavenges.
//   - $settings is readable and its $userStreamAcl "$d" (delete) or "$mw" (metadata
//     write, which can truncate with $tb) lists $all or the user, or is absent (the
//     default lets every user delete user streams).
//
// A user that cannot read $settings cannot see the ACL that applies to it; then no
// risk is reported, and docs/eventstoredb.md says how to check by hand. Per-stream ACLs
// in $$party-… metadata are not inspected.
func (s *Store) DeleteRisks(ctx context.Context) ([]string, error) {
	var risks []string
	if s.cfg.DisableTLS {
		risks = append(risks, "the connection is insecure (tls=false): an EventStoreDB run with --insecure has no access control, so any client may delete or truncate ledger streams")
	}
	var data []byte
	err := s.readEvents(ctx, "$settings", esdbclient.Backwards, esdbclient.End{}, 1, func(ev *esdbclient.RecordedEvent) (bool, error) {
		data = ev.Data
		return false, nil
	})
	var ee *esdbclient.Error
	switch {
	case errors.As(err, &ee) && (ee.Code() == esdbclient.ErrorCodeAccessDenied || ee.Code() == esdbclient.ErrorCodeUnauthenticated):
		return risks, nil
	case errors.Is(err, ledger.ErrNotFound):
		return append(risks, "$settings is readable by this user and holds no ACL: by default every user may delete user streams, ledger streams included"), nil
	case err != nil:
		return risks, fmt.Errorf("esdb: reading $settings: %w", err)
	}
	more, err := settingsRisks(data, s.cfg.Username)
	return append(risks, more...), err
}

// settingsRisks reads the risks out of a readable $settings event (its JSON data) for
// user: being able to read it at all, and a $userStreamAcl that lets the user delete
// or rewrite stream metadata.
func settingsRisks(data []byte, user string) ([]string, error) {
	risks := []string{fmt.Sprintf("user %q can read $settings, which by default only $admins can: an admin may delete any stream and start scavenges", user)}
	var settings struct {
		UserStreamACL map[string]json.RawMessage `json:"$userStreamAcl"`
	}
	if err := json.Unmarshal(data, &settings); err != nil {
		return risks, fmt.Errorf("esdb: $settings is not the JSON EventStoreDB documents: %w", err)
	}
	for _, right := range []string{"$d", "$mw"} {
		raw, ok := settings.UserStreamACL[right]
		if !ok {
			risks = append(risks, fmt.Sprintf("$userStreamAcl sets no %q: by default every user holds it on user streams", right))
			continue
		}
		var roles []string
		var one string
		if json.Unmarshal(raw, &one) == nil {
			roles = []string{one}
		} else if err := json.Unmarshal(raw, &roles); err != nil {
			return risks, fmt.Errorf("esdb: $userStreamAcl %q: %w", right, err)
		}
		if slices.Contains(roles, "$all") || (user != "" && slices.Contains(roles, user)) {
			risks = append(risks, fmt.Sprintf("$userStreamAcl %q grants %v, which includes this user", right, roles))
		}
	}
	return risks, nil
}
