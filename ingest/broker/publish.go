package broker

import (
	"context"
	"errors"
	"fmt"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("broker: closed")

// Publish hands a message to the embedded broker in process, through
// mochi's inline client, for the server's own outgoing messages (alerts,
// notifications: rules/notify's Publisher). Why not through a client
// connection as before: each alert was encoded by paho, written to the
// loopback socket and parsed again by mochi, ~8 % of the server's CPU when
// 10,000 geofences fire (issue 16 goal 1). When Publish returns the broker
// has taken the message: written or queued to every subscriber's session,
// which is what an external broker's PUBACK tells; subscribers receive it
// with the QoS they asked for, up to qos.
func (b *Broker) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt publish %s: %w", topic, err)
	}
	select {
	case <-b.stopCh:
		return fmt.Errorf("mqtt publish %s: %w", topic, ErrClosed)
	default:
	}
	if err := b.srv.Publish(topic, payload, retained, qos); err != nil {
		return fmt.Errorf("mqtt publish %s: %w", topic, err)
	}
	return nil
}

// Listened reports whether any client (or inline subscriber) subscribes to
// topic now: a message published to it, not retained, would otherwise
// reach nobody (rules/notify skips encoding such alerts).
func (b *Broker) Listened(topic string) bool {
	s := b.srv.Topics.Subscribers(topic)
	return len(s.Subscriptions) > 0 || len(s.Shared) > 0 || len(s.InlineSubscriptions) > 0
}
