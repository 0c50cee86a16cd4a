package server

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec wrapped below
	"google.golang.org/grpc/mem"

	ledger "github.com/stanceledger/ledger"
)

// gRPC answers a request that does not unmarshal (invalid UTF-8 in a string, a
// truncated field, nesting past protobuf's depth limit) with Internal, as if the
// server were at fault. The server's codec therefore records such a failure instead
// of returning it, and the interceptors answer it with InvalidArgument (through the
// error table) before the handler runs.
type lenientCodec struct {
	encoding.CodecV2
	// failed maps a message that did not unmarshal to the error; each entry is taken
	// (and deleted) by the interceptor of the call that received it.
	failed sync.Map
}

func newLenientCodec() *lenientCodec {
	return &lenientCodec{CodecV2: encoding.GetCodecV2("proto")}
}

// Unmarshal decodes data into v; a failure is kept for takeDecodeError, not returned.
func (c *lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.CodecV2.Unmarshal(data, v); err != nil {
		c.failed.Store(v, err)
	}
	return nil
}

// takeDecodeError returns (and forgets) the unmarshal failure of m as a
// *ledger.ValidationError, or nil.
func (c *lenientCodec) takeDecodeError(m any) error {
	err, ok := c.failed.LoadAndDelete(m)
	if !ok {
		return nil
	}
	return ledger.Invalid("", "the request does not decode as %T: %v", m, err)
}

// decodeStream refuses a streamed request that did not decode when the handler receives it.
func (s *Server) decodeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &decodingStream{ServerStream: ss, codec: s.codec})
}

type decodingStream struct {
	grpc.ServerStream
	codec *lenientCodec
}

func (d *decodingStream) RecvMsg(m any) error {
	if err := d.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := d.codec.takeDecodeError(m); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}
