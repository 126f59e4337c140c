// yamux_peer: hashicorp/yamux (Debian's golang-github-hashicorp-yamux-dev) as the independent
// mux peer of tests/mux_interop.rs. Built offline by the test with GO111MODULE=off against
// /usr/share/gocode.
//
//	yamux_peer server            listen on 127.0.0.1:0, print "PORT <n>", serve one session
//	yamux_peer client <port>     dial the Rust server and run the client checks
//	yamux_peer backlog           listen, print "PORT <n>", never accept streams (backlog 1)
//
// Stream protocol (first byte of each stream is a command):
//
//	'E' echo: copy everything back until EOF, then close (FIN)
//	'S' sink: read to EOF, answer with the byte count (8 bytes big-endian) and SHA-256
//	'L' (served by Rust only) like 'S', but the client first sends the length (8 bytes
//	    big-endian) and keeps its side open until it has the answer
//	'X' (served by Rust only) the server resets the stream after the command byte
//
// Debian's yamux returns io.EOF from Read on a stream this side has half-closed whenever its
// receive buffer is momentarily empty, even though the peer has not closed (fixed in later
// upstream versions). So the Go client never reads after its own Close: it reads exactly
// what it expects, closes, and then checks that the peer's FIN arrived by watching the
// session's stream count drop to zero.
//
// The client prints one "OK <check>" line per passed check and exits 0, or prints the
// failure and exits 1.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

func die(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func listen() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die("listen: %v", err)
	}
	fmt.Printf("PORT %d\n", l.Addr().(*net.TCPAddr).Port)
	return l
}

func serveStream(s net.Conn) {
	defer s.Close()
	cmd := make([]byte, 1)
	if _, err := io.ReadFull(s, cmd); err != nil {
		return
	}
	switch cmd[0] {
	case 'E':
		io.Copy(s, s)
	case 'S':
		h := sha256.New()
		n, _ := io.Copy(h, s)
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		s.Write(append(out[:], h.Sum(nil)...))
	}
}

func server() {
	l := listen()
	conn, err := l.Accept()
	if err != nil {
		die("accept: %v", err)
	}
	sess, err := yamux.Server(conn, nil)
	if err != nil {
		die("yamux server: %v", err)
	}
	for {
		s, err := sess.Accept()
		if err != nil {
			return
		}
		go serveStream(s)
	}
}

func backlog() {
	l := listen()
	conn, err := l.Accept()
	if err != nil {
		die("accept: %v", err)
	}
	cfg := yamux.DefaultConfig()
	cfg.AcceptBacklog = 1
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		die("yamux server: %v", err)
	}
	<-sess.CloseChan()
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func client(port string) {
	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		die("dial: %v", err)
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		die("yamux client: %v", err)
	}

	// Several concurrent echo streams of 1 MiB each: window updates both ways.
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := sess.OpenStream()
			if err != nil {
				errs <- fmt.Sprintf("open: %v", err)
				return
			}
			defer s.Close()
			data := payload(1<<20, byte(i))
			werr := make(chan error, 1)
			go func() {
				if _, err := s.Write([]byte{'E'}); err != nil {
					werr <- err
					return
				}
				_, err := s.Write(data)
				werr <- err
			}()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(s, got); err != nil {
				errs <- fmt.Sprintf("stream %d read: %v", i, err)
				return
			}
			if err := <-werr; err != nil {
				errs <- fmt.Sprintf("stream %d write: %v", i, err)
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Sprintf("stream %d: echo differs", i)
			}
			// FIN: the Rust echo ends when it sees it, and closes in turn.
			s.Close()
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		die("%s", e)
	}
	fmt.Println("OK echo 6x1MiB")
	// Every stream is forgotten only once both FINs were exchanged.
	deadline := time.Now().Add(5 * time.Second)
	for sess.NumStreams() != 0 {
		if time.Now().After(deadline) {
			die("%d streams still open 5 s after closing: no FIN from the peer", sess.NumStreams())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("OK fin both ways")

	// Sink: count and hash computed by the Rust side.
	s, err := sess.OpenStream()
	if err != nil {
		die("open: %v", err)
	}
	data := payload(3<<20, 9)
	var hdr [9]byte
	hdr[0] = 'L'
	binary.BigEndian.PutUint64(hdr[1:], uint64(len(data)))
	s.Write(hdr[:])
	s.Write(data)
	ans := make([]byte, 40)
	if _, err := io.ReadFull(s, ans); err != nil {
		die("sink answer: %v", err)
	}
	s.Close()
	sum := sha256.Sum256(data)
	if binary.BigEndian.Uint64(ans[:8]) != uint64(len(data)) || !bytes.Equal(ans[8:], sum[:]) {
		die("sink answer does not match")
	}
	fmt.Println("OK sink 3MiB sha256")

	// RST from Rust: reading fails with a reset, not EOF.
	s, err = sess.OpenStream()
	if err != nil {
		die("open: %v", err)
	}
	s.Write([]byte{'X'})
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(s)
	if err == nil {
		die("reset stream ended with EOF, want a reset error")
	}
	fmt.Printf("OK reset seen: %v\n", err)

	rtt, err := sess.Ping()
	if err != nil {
		die("ping: %v", err)
	}
	fmt.Printf("OK ping %v\n", rtt)
	sess.Close()
}

func main() {
	if len(os.Args) < 2 {
		die("usage: yamux_peer server|client <port>|backlog")
	}
	switch os.Args[1] {
	case "server":
		server()
	case "client":
		if len(os.Args) < 3 {
			die("client needs a port")
		}
		client(os.Args[2])
	case "backlog":
		backlog()
	default:
		die("unknown mode %q", os.Args[1])
	}
}
