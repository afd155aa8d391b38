package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// Format 3 (R2 – R3.2): the inner stream is compressed, then encrypted as
// a whole by `openssl enc -aes-256-cbc -md MD5 -pass pass:<pass>`, then
// split; every chunk NAME.NNN is followed by NAME.NNN.hmac, the output of
// `openssl dgst -<algo> -hmac <pass>` over it.

// hmacHash maps a v3 header's hmac-algorithm (an openssl digest name) to
// the hash; nil when we do not know it.
func hmacHash(name string) func() hash.Hash {
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(name), "-")) {
	case "sha512":
		return sha512.New
	case "sha384":
		return sha512.New384
	case "sha256":
		return sha256.New
	case "sha224":
		return sha256.New224
	case "sha1":
		return sha1.New
	case "md5":
		return md5.New
	}
	return nil
}

type v3State struct {
	hash func() hash.Hash
}

// v3Chunk: vm dirs as R3 named them (mangled vmN when encrypted, else
// the qube's directory), a file or "." for a whole-directory archive.
var v3Chunk = regexp.MustCompile(`^((vm[0-9]+|(?:appvms|vm-templates|servicevms)/[A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9._-]*|\.)|(dom0-home/)([A-Za-z0-9._-]+)|qubes\.xml)\.([0-9]{3,})$`)

func (a *Archive) openV3(ctx context.Context) error {
	h := hmacHash(a.Header.HMACAlgorithm)
	if h == nil {
		return formatErr("unsupported hmac-algorithm %q", a.Header.HMACAlgorithm)
	}
	if a.Header.Encrypted && !strings.EqualFold(a.Header.CryptoAlgorithm, "aes-256-cbc") {
		return formatErr("unsupported crypto-algorithm %q (aes-256-cbc only)", a.Header.CryptoAlgorithm)
	}
	a.v3 = &v3State{hash: h}
	data, err := a.small("qubes.xml.000", maxMetadataSize)
	if err != nil {
		return err
	}
	mac, err := a.small("qubes.xml.000.hmac", maxHMACSize)
	if err != nil {
		return err
	}
	if !a.v3.verify(data, mac, a.o.Passphrase) {
		return formatErr("failed to decrypt qubes.xml.000: HMAC verification failed (wrong passphrase or modified data)")
	}
	var stream io.Reader = bytes.NewReader(data)
	if a.Header.Encrypted {
		stream = newOpensslReader(stream, a.o.Passphrase)
	}
	plain, err := io.ReadAll(io.LimitReader(stream, maxMetadataSize+64))
	if err != nil {
		return formatErr("qubes.xml.000: %v", err)
	}
	xml, err := innerFile(plain, a.filter(), "qubes.xml", maxQubesXML)
	if err != nil {
		return formatErr("qubes.xml.000: %v", err)
	}
	a.QubesXML = xml
	return nil
}

func (s *v3State) verify(data, mac []byte, pass string) bool {
	_, hexsum, ok := strings.Cut(strings.TrimSpace(string(mac)), "=")
	if !ok {
		return false
	}
	want, err := hex.DecodeString(strings.TrimSpace(hexsum))
	if err != nil {
		return false
	}
	m := hmac.New(s.hash, []byte(pass))
	m.Write(data)
	return hmac.Equal(m.Sum(nil), want)
}

func (a *Archive) extractV3(ctx context.Context, want func(string) bool, open OpenFunc) error {
	var cur *innerJob
	seen := map[string]bool{}
	defer func() {
		if cur != nil {
			cur.abort()
		}
	}()
	finish := func() error {
		if cur == nil {
			return nil
		}
		err := cur.finish()
		cur = nil
		return err
	}
	var decrypt func(io.Reader) io.Reader
	if a.Header.Encrypted {
		decrypt = func(r io.Reader) io.Reader { return newOpensslReader(r, a.o.Passphrase) }
	}
	pool := newBufPool(2)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := a.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return formatErr("%v", err)
		}
		if strings.HasPrefix(h.Name, "/") || strings.Contains("/"+h.Name+"/", "/../") {
			return formatErr("refused member %q: absolute or parent-relative path", h.Name)
		}
		m := v3Chunk.FindStringSubmatch(h.Name)
		if m == nil {
			return formatErr("refused member %q: not a format 3 chunk name (DIR/FILE.NNN)", h.Name)
		}
		file, dir := m[1], m[2]+"/"
		if m[4] != "" {
			dir = m[4]
		}
		idx, _ := strconv.Atoi(m[6])
		skip := file == "qubes.xml" || !want(dir)
		if h.Size > MaxChunkSize {
			return formatErr("%s is %d bytes, larger than any chunk", h.Name, h.Size)
		}
		var data []byte
		if !skip {
			data = pool.get(int(h.Size))
			if _, err := io.ReadFull(a.tr, data); err != nil {
				pool.put(data)
				return a.eofErr(err, h.Name)
			}
		}
		mh, err := a.tr.Next()
		if err != nil || mh.Name != h.Name+".hmac" || mh.Size > maxHMACSize {
			if data != nil {
				pool.put(data)
			}
			return formatErr("%s is not followed by %s.hmac", h.Name, h.Name)
		}
		if skip {
			continue
		}
		mac := make([]byte, mh.Size)
		if _, err := io.ReadFull(a.tr, mac); err != nil {
			pool.put(data)
			return a.eofErr(err, mh.Name)
		}
		if !a.v3.verify(data, mac, a.o.Passphrase) {
			pool.put(data)
			return formatErr("failed to decrypt %s: HMAC verification failed (wrong passphrase, modified or moved data)", h.Name)
		}
		if idx == 0 {
			if err := finish(); err != nil {
				pool.put(data)
				return err
			}
			if seen[file] {
				pool.put(data)
				return formatErr("%s appears twice in the archive", file)
			}
			seen[file] = true
			cur = startInner(file, a.filter(), open, pool, decrypt, a.o.MaxExpansion)
		} else if cur == nil || cur.name != file || idx != cur.next {
			pool.put(data)
			exp := "a .000 chunk"
			if cur != nil {
				exp = fmt.Sprintf("%s.%03d", cur.name, cur.next)
			}
			return formatErr("Unexpected file in archive: %s, expected %s", h.Name, exp)
		}
		if err := cur.feed(ctx, data, data); err != nil {
			return err
		}
		cur.next++
	}
	return finish()
}

// untarDir reads a whole-directory inner archive (R3 templates): every
// regular file directly in the directory goes to open as dir+file.
func untarDir(r io.Reader, filter, dir string, open OpenFunc) error {
	dr, err := newDecompressor(filter, r)
	if err != nil {
		return err
	}
	defer dr.Close()
	dr = limitExpansion(r, dr)
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
		rel, ok := strings.CutPrefix(path.Clean(h.Name), path.Clean(dir)+"/")
		if !ok || strings.Contains(rel, "/") || rel == ".." {
			continue
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeGNUSparse {
			continue
		}
		w, err := open(dir+rel, h.Size)
		if err != nil {
			return err
		}
		if w == nil {
			continue
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Close()
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
}

// opensslReader decrypts `openssl enc -aes-256-cbc -md MD5` output:
// "Salted__", 8 bytes of salt, CBC ciphertext with PKCS#7 padding; key
// and IV from EVP_BytesToKey(MD5, one round).
type opensslReader struct {
	r    io.Reader
	pass string
	cbc  cipher.BlockMode
	buf  []byte // decrypted, ready
	hold []byte // last decrypted block, held until EOF for the padding
	in   []byte
	err  error
}

func newOpensslReader(r io.Reader, pass string) io.Reader {
	return &opensslReader{r: r, pass: pass}
}

var errBadPadding = errors.New("openssl decryption failed (bad padding: wrong passphrase or truncated data)")

func (o *opensslReader) Read(p []byte) (int, error) {
	for len(o.buf) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.cbc == nil {
			var hdr [16]byte
			if _, err := io.ReadFull(o.r, hdr[:]); err != nil {
				o.err = fmt.Errorf("openssl stream: %w", noEOF(err))
				continue
			}
			if string(hdr[:8]) != "Salted__" {
				o.err = errors.New("openssl stream: no Salted__ header")
				continue
			}
			var d, kiv []byte
			for len(kiv) < 48 {
				h := md5.New()
				h.Write(d)
				h.Write([]byte(o.pass))
				h.Write(hdr[8:16])
				d = h.Sum(nil)
				kiv = append(kiv, d...)
			}
			blk, _ := aes.NewCipher(kiv[:32])
			o.cbc = cipher.NewCBCDecrypter(blk, kiv[32:48])
			o.in = make([]byte, 64<<10)
		}
		n, err := io.ReadFull(o.r, o.in) // 64 KiB, a whole number of blocks
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = io.EOF
			if n%aes.BlockSize != 0 {
				o.err = errBadPadding
				continue
			}
		}
		if n > 0 {
			out := make([]byte, n)
			o.cbc.CryptBlocks(out, o.in[:n])
			o.buf = append(o.hold, out[:n-aes.BlockSize]...)
			o.hold = append([]byte(nil), out[n-aes.BlockSize:]...)
		}
		if err == io.EOF {
			if len(o.hold) != aes.BlockSize {
				o.err = errBadPadding
				continue
			}
			pad := int(o.hold[aes.BlockSize-1])
			if pad == 0 || pad > aes.BlockSize || !bytes.Equal(o.hold[aes.BlockSize-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
				o.err = errBadPadding
				continue
			}
			o.buf = append(o.buf, o.hold[:aes.BlockSize-pad]...)
			o.hold = nil
			o.err = io.EOF
		} else if err != nil {
			o.err = err
		}
	}
	n := copy(p, o.buf)
	o.buf = o.buf[n:]
	return n, nil
}

// v3 qubes.xml (R3 QubesVmCollection): attributes per qube.
type v3Collection struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	VMs     []v3VM     `xml:",any"`
}

type v3VM struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
}

func (v v3VM) attr(name string) string {
	for _, a := range v.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// V3App converts a format 3 qubes.xml (R3 QubesVmCollection) into the R4
// model, as the stock core2 reader does: classes mapped (NetVM and ProxyVM
// become AppVMs that provide network, HVMs StandaloneVMs), template and
// netvm from their qids, the backup-* attributes as features.
func (a *Archive) V3App(stateDir string, host core.Host) (*core.App, error) {
	var c v3Collection
	if err := xml.Unmarshal(a.QubesXML, &c); err != nil {
		return nil, fmt.Errorf("format 3 qubes.xml: %w", err)
	}
	if c.XMLName.Local != "QubesVmCollection" {
		return nil, fmt.Errorf("format 3 qubes.xml: root is <%s>, not <QubesVmCollection>", c.XMLName.Local)
	}
	byQID := map[string]string{}
	for _, v := range c.VMs {
		byQID[v.attr("qid")] = v.attr("name")
	}
	var b strings.Builder
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return strings.ReplaceAll(e.String(), `"`, "&quot;")
	}
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n<qubes>\n<labels>\n")
	for i, l := range []string{"red", "orange", "yellow", "green", "gray", "blue", "purple", "black"} {
		fmt.Fprintf(&b, "<label id=\"label-%d\" color=\"0x000000\">%s</label>\n", i+1, l)
	}
	// The pool only gives the converted qubes a volume layout; a restore
	// creates them in the host's own pools.
	fmt.Fprintf(&b, "</labels>\n<pools>\n<pool dir_path=\"%s\" driver=\"file\" name=\"varlibqubes\" revisions_to_keep=\"1\"/>\n</pools>\n", esc(stateDir))
	b.WriteString("<properties>\n<property name=\"default_pool\">varlibqubes</property>\n</properties>\n<domains>\n")
	qid := 0
	for _, v := range c.VMs {
		class := ""
		extra := map[string]string{}
		switch v.XMLName.Local {
		case "QubesAppVm":
			class = "AppVM"
		case "QubesTemplateVm":
			class = "TemplateVM"
		case "QubesNetVm", "QubesProxyVm":
			class = "AppVM"
			extra["provides_network"] = "True"
		case "QubesHVm":
			class = "StandaloneVM"
			extra["virt_mode"] = "hvm"
		case "QubesTemplateHVm":
			class = "TemplateVM"
			extra["virt_mode"] = "hvm"
		case "QubesAdminVm":
			// Only its home can be in a backup: dom0-home/<user>.
			if v.attr("backup_content") == "True" {
				fmt.Fprintf(&b, "<domain id=\"domain-0\" class=\"AdminVM\">\n<properties>\n<property name=\"label\">black</property>\n</properties>\n<features>\n<feature name=\"backup-content\">1</feature>\n<feature name=\"backup-path\">%s</feature>\n<feature name=\"backup-size\">%s</feature>\n</features>\n</domain>\n",
					esc(strings.TrimSuffix(v.attr("backup_path"), "/")), esc(v.attr("backup_size")))
			}
			continue
		default:
			continue // dom0 and DisposableVMs are not restored
		}
		qid++
		name := v.attr("name")
		fmt.Fprintf(&b, "<domain id=\"domain-%d\" class=\"%s\">\n<properties>\n", qid, class)
		prop := func(k, val string) { fmt.Fprintf(&b, "<property name=\"%s\">%s</property>\n", k, esc(val)) }
		prop("name", name)
		prop("qid", strconv.Itoa(qid))
		prop("label", v.attr("label"))
		if t := byQID[v.attr("template_qid")]; t != "" && class == "AppVM" {
			prop("template", t)
		}
		if v.attr("uses_default_netvm") != "True" {
			if n := byQID[v.attr("netvm_qid")]; n != "" {
				prop("netvm", n)
			} else if v.attr("netvm_qid") == "none" {
				b.WriteString("<property name=\"netvm\"></property>\n")
			}
		}
		for _, k := range []string{"memory", "maxmem", "vcpus"} {
			if val := v.attr(k); val != "" && val != "0" {
				if _, err := strconv.Atoi(val); err == nil {
					prop(k, val)
				}
			}
		}
		for k, val := range extra {
			prop(k, val)
		}
		b.WriteString("</properties>\n<features>\n")
		if v.attr("backup_content") == "True" {
			p := strings.TrimSuffix(v.attr("backup_path"), "/") + "/"
			fmt.Fprintf(&b, "<feature name=\"backup-content\">1</feature>\n<feature name=\"backup-path\">%s</feature>\n<feature name=\"backup-size\">%s</feature>\n", esc(p), esc(v.attr("backup_size")))
		}
		b.WriteString("</features>\n</domain>\n")
	}
	b.WriteString("</domains>\n</qubes>\n")
	app, err := core.Parse([]byte(b.String()), "format 3 qubes.xml", stateDir, host)
	if err != nil {
		return nil, fmt.Errorf("format 3 qubes.xml: %w", err)
	}
	return app, nil
}
