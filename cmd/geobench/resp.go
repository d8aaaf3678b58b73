package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// respConn is a minimal RESP (Redis protocol) client for a peer server
// such as Tile38: commands as arrays of bulk strings, replies read in full
// (their bytes are counted, their content is not parsed beyond errors).
type respConn struct {
	c   net.Conn
	r   *bufio.Reader
	out []byte // commands not yet written
}

func dialRESP(addr string) (*respConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &respConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (c *respConn) Close() error { return c.c.Close() }

// send buffers one command.
func (c *respConn) send(args ...string) {
	c.out = append(c.out, '*')
	c.out = strconv.AppendInt(c.out, int64(len(args)), 10)
	c.out = append(c.out, "\r\n"...)
	for _, a := range args {
		c.out = append(c.out, '$')
		c.out = strconv.AppendInt(c.out, int64(len(a)), 10)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, a...)
		c.out = append(c.out, "\r\n"...)
	}
}

// flush writes the buffered commands.
func (c *respConn) flush() error {
	_, err := c.c.Write(c.out)
	c.out = c.out[:0]
	return err
}

// do sends one command and reads its reply; it returns the reply's size in
// bytes and the first bulk or simple string it held (for SERVER, JSON).
func (c *respConn) do(args ...string) (int, string, error) {
	c.send(args...)
	if err := c.flush(); err != nil {
		return 0, "", err
	}
	return c.read()
}

var errReply = errors.New("server error reply")

// read reads one reply.
func (c *respConn) read() (int, string, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	n := len(line)
	if len(line) < 3 {
		return n, "", fmt.Errorf("short reply %q", line)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+', ':':
		return n, body, nil
	case '-':
		return n, body, fmt.Errorf("%w: %s", errReply, body)
	case '$':
		l, err := strconv.Atoi(body)
		if err != nil || l < 0 {
			return n, "", err
		}
		buf := make([]byte, l+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return n, "", err
		}
		return n + l + 2, string(buf[:l]), nil
	case '*':
		cnt, err := strconv.Atoi(body)
		if err != nil {
			return n, "", err
		}
		first := ""
		for i := 0; i < cnt; i++ {
			m, s, err := c.read()
			n += m
			if err != nil {
				return n, "", err
			}
			if i == 0 {
				first = s
			}
		}
		return n, first, nil
	}
	return n, "", fmt.Errorf("unknown reply %q", line)
}
