package server

import "context"

// Anonymous is the principal of a request that carries no authenticated identity.
const Anonymous = "anonymous"

type principalKey struct{}

// WithPrincipal returns a copy of ctx that names principal as the caller. An
// authentication interceptor calls it; the handlers read it with PrincipalFrom.
func WithPrincipal(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal)
}

// PrincipalFrom returns the caller named by WithPrincipal, or Anonymous when there is none.
// Append stores it as the record's recorded_by.
func PrincipalFrom(ctx context.Context) string {
	if p, ok := ctx.Value(principalKey{}).(string); ok && p != "" {
		return p
	}
	return Anonymous
}
