package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The interceptors run outermost first: logging sees the final status, the error
// table turns domain errors into statuses, authentication and authorization (auth.go)
// refuse callers before anything else is spent on them, the per-connection call limit
// and the slow-consumer guard (limits.go) come next, and recovery (innermost) turns a
// handler's panic into Internal so the server keeps serving.

func (s *Server) unaryInterceptors() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		s.logUnary,
		s.errorsUnary,
		s.authUnary,
		s.connUnary,
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
	}
}

func (s *Server) streamInterceptors() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{
		s.logStream,
		s.errorsStream,
		s.authStream,
		s.connStream,
		s.decodeStream,
		recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
	}
}

// recovered logs a handler's panic with its stack and answers Internal.
func (s *Server) recovered(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "handler panicked", "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, internalMessage)
}

func (s *Server) errorsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, toStatus(ctx, s.log, info.FullMethod, err)
	}
	return resp, nil
}

func (s *Server) errorsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return toStatus(ss.Context(), s.log, info.FullMethod, handler(srv, ss))
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return handler(ctx, req)
	}
	start := time.Now()
	ctx, _ = withCallerSlot(ctx)
	resp, err := handler(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return handler(srv, ss)
	}
	start := time.Now()
	ctx, _ = withCallerSlot(ctx)
	err := handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	s.logCall(ctx, info.FullMethod, start, err)
	return err
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	st := status.Convert(err)
	attrs := []any{"method", method, "code", st.Code().String(), "duration", time.Since(start), "principal", callerOf(ctx)}
	if err != nil {
		attrs = append(attrs, "message", st.Message())
	}
	s.log.DebugContext(ctx, "grpc call", attrs...)
}
