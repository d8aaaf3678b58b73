package mqttin

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/citytwin/citytwin/internal/mqtttest"
)

// TestMain runs the package's own Mosquitto (brokers uses it beside the
// embedded broker) and checks for leaked goroutines after the tests.
func TestMain(m *testing.M) {
	mb, err := mqtttest.Start()
	switch {
	case err == nil:
		mosquittoURL = mb.URL
	case os.Getenv("CI") != "":
		fmt.Fprintln(os.Stderr, "mqttin:", err)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "mqttin: no Mosquitto; embedded broker only:", err)
	}
	code := m.Run()
	mb.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
