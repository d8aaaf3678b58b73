package ogc

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tQuoted // "double-quoted identifier": never a keyword
	tString
	tNumber
	tOp
	tLParen
	tRParen
	tComma
)

type token struct {
	kind tokKind
	text string
	pos  int // byte offset in the filter
}

// lexCQL splits CQL2 text into tokens. It rejects invalid UTF-8 and any
// character the grammar has no use for, naming the byte offset.
func lexCQL(s string) ([]token, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("filter: not valid UTF-8")
	}
	var out []token
	i := 0
	for i < len(s) {
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(c):
			i += size
		case c == '(':
			out = append(out, token{tLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")", i})
			i++
		case c == ',':
			out = append(out, token{tComma, ",", i})
			i++
		case c == '\'':
			text, end, err := lexQuoted(s, i, '\'')
			if err != nil {
				return nil, err
			}
			out = append(out, token{tString, text, i})
			i = end
		case c == '"':
			text, end, err := lexQuoted(s, i, '"')
			if err != nil {
				return nil, err
			}
			if text == "" {
				return nil, fmt.Errorf("filter: at %d: empty quoted name", i)
			}
			out = append(out, token{tQuoted, text, i})
			i = end
		case c == '=' || c == '<' || c == '>':
			j := i + 1
			if j < len(s) && ((c != '=' && s[j] == '=') || (c == '<' && s[j] == '>')) { // <=, >=, <>; "==" is not CQL2
				j++
			}
			out = append(out, token{tOp, s[i:j], i})
			i = j
		case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
			j := lexNumber(s, i)
			if j == i {
				return nil, fmt.Errorf("filter: at %d: unexpected %q", i, c)
			}
			out = append(out, token{tNumber, s[i:j], i})
			i = j
		case unicode.IsLetter(c) || c == '_':
			j := i + size
			for j < len(s) {
				r, n := utf8.DecodeRuneInString(s[j:])
				if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '.' && r != ':' {
					break
				}
				j += n
			}
			out = append(out, token{tIdent, s[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("filter: at %d: unexpected character %q", i, c)
		}
	}
	return append(out, token{tEOF, "", len(s)}), nil
}

// lexQuoted reads a quoted string or name starting at s[i] == q. A doubled
// quote stands for one; in a string, so does a backslash before the quote
// (the CQL2 BNF's escapeQuote). Other backslashes stay, for LIKE's escapes.
// It returns the text and the offset after it.
func lexQuoted(s string, i int, q byte) (string, int, error) {
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\\' && q == '\'' && j+1 < len(s) && s[j+1] == '\'':
			b.WriteByte(q)
			j++
		case c == q && j+1 < len(s) && s[j+1] == q:
			b.WriteByte(q)
			j++
		case c == q:
			return b.String(), j + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("filter: at %d: unterminated %c", i, q)
}

// lexNumber returns the end of the number starting at i: an optional sign,
// digits with at most one point, an optional exponent. It returns i when
// there is no digit.
func lexNumber(s string, i int) int {
	j := i
	if j < len(s) && (s[j] == '-' || s[j] == '+') {
		j++
	}
	digits, dot := 0, false
	for j < len(s) && ((s[j] >= '0' && s[j] <= '9') || (s[j] == '.' && !dot)) {
		if s[j] == '.' {
			dot = true
		} else {
			digits++
		}
		j++
	}
	if digits == 0 {
		return i
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < len(s) && (s[k] == '-' || s[k] == '+') {
			k++
		}
		if k < len(s) && s[k] >= '0' && s[k] <= '9' {
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			j = k
		}
	}
	return j
}
