package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citytwin/citytwin/ingest/replay"
	"github.com/citytwin/citytwin/twin"
)

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	broker := fs.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL to publish to")
	speed := fs.Float64("speed", 20, "replay speed as a multiple of real time (inf = as fast as possible)")
	as := fs.String("as", "", "register each trace id as a vehicle of this kind first (e.g. muck_truck)")
	srv := fs.String("server", "http://127.0.0.1:8080", "server to register vehicles with (PUT /api/entities) when --as is set")
	token := fs.String("token", "", "bearer token for --server (twin token --role operator)")
	qos := fs.Int("qos", 1, "MQTT QoS (0 or 1)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("want one trace file (id,time,lon,lat rows)")}
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := replay.ReadTrace(f, replay.Shanghai())
	if err != nil {
		return err
	}
	pub, err := dialPublisher(*broker, byte(*qos))
	if err != nil {
		return err
	}
	defer pub.close()
	opts := replay.Options{Speed: *speed, As: *as}
	if *as != "" {
		opts.Register = func(ctx context.Context, feat *twin.Feature) error { return putEntity(ctx, *srv, *token, feat) }
	}
	start := time.Now()
	fmt.Fprintf(stderr, "replaying %d rows from %s to %s at %gx\n", len(rows), fs.Arg(0), *broker, *speed)
	if err := replay.Replay(ctx, rows, pub, opts); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %d messages in %s\n", len(rows), time.Since(start).Round(time.Millisecond))
	return nil
}

// mqttPublisher publishes telemetry with a plain paho client.
type mqttPublisher struct {
	c   paho.Client
	qos byte
}

func dialPublisher(broker string, qos byte) (*mqttPublisher, error) {
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("twin-replay-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect to MQTT broker %s: %w", broker, tok.Error())
	}
	return &mqttPublisher{c: c, qos: qos}, nil
}

func (p *mqttPublisher) Publish(ctx context.Context, topic string, payload []byte) error {
	t := p.c.Publish(topic, p.qos, false, payload)
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *mqttPublisher) close() { p.c.Disconnect(1000) }

// putEntity registers a feature through the server's REST API.
func putEntity(ctx context.Context, base, token string, f *twin.Feature) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	u := strings.TrimRight(base, "/") + "/api/entities/" + string(f.ID.Layer) + "/" + url.PathEscape(f.ID.Name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/geo+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("register %s: %w", f.ID, err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("register %s: %s: %s", f.ID, res.Status, bytes.TrimSpace(b))
	}
	return nil
}
