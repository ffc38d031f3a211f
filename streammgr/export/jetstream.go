package export

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (c JetStreamConfig) common() common {
	return common{Identifier: c.Identifier, BatchSize: c.BatchSize, BatchInterval: c.BatchInterval,
		Priority: c.Priority, StartSequenceNumber: c.StartSequenceNumber, Disabled: c.Disabled}
}

func (c JetStreamConfig) newSender(e *exporter) sender { return &jetStreamSender{e: e, cfg: c} }

// jetStreamSender publishes a batch with JetStream publish acks over one
// connection that nats.go reconnects by itself. Each message carries
// Nats-Msg-Id "<stream>-<seq>", so a batch sent again (its acks lost, or
// progress not saved before a crash) is dropped by the JetStream stream's
// duplicate window: at-least-once is effectively once within that window.
// A batch is published in order on one connection and resent from its
// start on any failure, so the JetStream stream keeps the order.
type jetStreamSender struct {
	e   *exporter
	cfg JetStreamConfig

	nc *nats.Conn
	js jetstream.JetStream
	// ready is false until the named JetStream stream is known to exist,
	// and again after a failure (the stream may have been deleted).
	ready bool
}

func (s *jetStreamSender) close() {
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
}

func (s *jetStreamSender) connect() error {
	o, log := s.e.m.o, s.e.log
	opts := []nats.Option{
		nats.Name("evergreen streammgr " + s.e.stream + " " + s.cfg.Identifier),
		nats.MaxReconnects(-1),
		// The export's own backoff, per pass over the server list.
		nats.CustomReconnectDelay(func(passes int) time.Duration {
			d := o.BackoffBase
			for i := 1; i < passes && d < o.BackoffMax; i++ {
				d *= 2
			}
			return min(d, o.BackoffMax)
		}),
		// Fail publishes while disconnected instead of buffering them: the
		// batch is retried whole after the reconnect.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("JetStream export disconnected; reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("JetStream export reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("JetStream export connection error", "err", err)
		}),
	}
	if s.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(s.cfg.CredsFile))
	}
	nc, err := nats.Connect(s.cfg.URLs, opts...)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", s.cfg.URLs, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		nc.Close()
		return err
	}
	s.nc, s.js, s.ready = nc, js, false
	return nil
}

// ensureStream creates the named JetStream stream when it does not exist:
// the subject, file storage, the server's defaults otherwise (a duplicate
// window of 2 minutes). An existing stream is used as it is.
func (s *jetStreamSender) ensureStream(ctx context.Context) error {
	if s.cfg.Stream == "" || s.ready {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.e.m.o.AckTimeout)
	defer cancel()
	_, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = s.js.CreateStream(ctx, jetstream.StreamConfig{Name: s.cfg.Stream, Subjects: []string{s.cfg.Subject},
			Storage: jetstream.FileStorage})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // created meanwhile by someone else
		} else if err == nil {
			s.e.log.Info("JetStream stream created", "jetstream", s.cfg.Stream, "subject", s.cfg.Subject)
		}
	}
	if err != nil {
		return fmt.Errorf("JetStream stream %q: %w", s.cfg.Stream, err)
	}
	s.ready = true
	return nil
}

func (s *jetStreamSender) send(ctx context.Context, msgs []store.Message) error {
	if s.nc != nil && s.nc.IsClosed() {
		s.close()
	}
	if s.nc == nil {
		if err := s.connect(); err != nil {
			return err
		}
	}
	if !s.nc.IsConnected() {
		msg := fmt.Sprintf("not connected to %s (%s)", s.cfg.URLs, s.nc.Status())
		if err := s.nc.LastError(); err != nil {
			msg += ": " + err.Error()
		}
		return errors.New(msg)
	}
	err := s.publish(ctx, msgs)
	if err != nil {
		s.ready = false
	}
	return err
}

func (s *jetStreamSender) publish(ctx context.Context, msgs []store.Message) error {
	if err := s.ensureStream(ctx); err != nil {
		return err
	}
	stream := s.e.stream
	acks := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		nm := nats.NewMsg(s.cfg.Subject)
		nm.Data = m.Payload
		nm.Header.Set("X-Evergreen-Stream", stream)
		nm.Header.Set("X-Evergreen-Sequence-Number", strconv.FormatInt(m.Seq, 10))
		nm.Header.Set("X-Evergreen-Ingest-Time", strconv.FormatInt(m.Time, 10))
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(stream + "-" + strconv.FormatInt(m.Seq, 10))}
		if s.cfg.Stream != "" {
			opts = append(opts, jetstream.WithExpectStream(s.cfg.Stream))
		}
		f, err := s.js.PublishMsgAsync(nm, opts...)
		if err != nil {
			return fmt.Errorf("publishing message %d to %q: %w", m.Seq, s.cfg.Subject, err)
		}
		acks = append(acks, f)
	}
	for i, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("message %d on %q not acknowledged: %w", msgs[i].Seq, s.cfg.Subject, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
