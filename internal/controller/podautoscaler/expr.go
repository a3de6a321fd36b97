package podautoscaler

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// The built-in evaluator is a fixed arithmetic grammar, not a script
// language: it cannot loop, call out or allocate without bound, so running
// it inside the controller is safe. Grammar:
//
//	expr    = term { ("+" | "-") term }
//	term    = unary { ("*" | "/") unary }
//	unary   = "-" unary | primary
//	primary = number | variable | function "(" expr { "," expr } ")" | "(" expr ")"
//
// Variables: value, replicas. Functions: ceil, floor, round (one argument),
// min, max (two or more).

// maxDepth bounds nesting, so a pathological expression cannot exhaust the
// stack (the CRD also bounds its length).
const maxDepth = 32

// Vars are the inputs an expression can read.
type Vars struct {
	// Value is the sum of the metric answers.
	Value float64
	// Replicas is the target's current count.
	Replicas float64
}

// Expr is a parsed expression.
type Expr struct {
	src  string
	eval func(Vars) (float64, error)
}

// String returns the source text.
func (e *Expr) String() string { return e.src }

// Replicas evaluates the expression and rounds a fractional result up, so
// "value / 10" asks for enough replicas. A result that is not a finite
// number from 0 to MaxInt32 is an error, never a scale.
func (e *Expr) Replicas(v Vars) (int32, error) {
	f, err := e.eval(v)
	if err != nil {
		return 0, fmt.Errorf("expression %q: %w", e.src, err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > math.MaxInt32 {
		return 0, fmt.Errorf("expression %q: result %v is not a replica count (0 to %d)", e.src, f, math.MaxInt32)
	}
	return int32(math.Ceil(f)), nil
}

// ParseExpr parses src, reporting the position of the first problem.
func ParseExpr(src string) (*Expr, error) {
	p := &parser{src: src}
	p.next()
	f, err := p.expr(0)
	if err == nil && p.tok.kind != tokEOF {
		err = p.errorf("unexpected %q", p.tok.text)
	}
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", src, err)
	}
	return &Expr{src: src, eval: f}, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokNum
	tokIdent
	tokOp
	tokBad
)

type token struct {
	kind tokKind
	text string
	pos  int
	num  float64
}

type evalFn = func(Vars) (float64, error)

type parser struct {
	src string
	pos int
	tok token
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at %d: %s", p.tok.pos+1, fmt.Sprintf(format, args...))
}

// next reads the next token.
func (p *parser) next() {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(p.src) {
		p.tok = token{kind: tokEOF, pos: start}
		return
	}
	c := rune(p.src[p.pos])
	switch {
	case unicode.IsDigit(c) || c == '.':
		for p.pos < len(p.src) && (unicode.IsDigit(rune(p.src[p.pos])) || p.src[p.pos] == '.') {
			p.pos++
		}
		n, err := strconv.ParseFloat(p.src[start:p.pos], 64)
		p.tok = token{kind: tokNum, text: p.src[start:p.pos], pos: start, num: n}
		if err != nil {
			p.tok.kind = tokBad
		}
	case unicode.IsLetter(c):
		for p.pos < len(p.src) && unicode.IsLetter(rune(p.src[p.pos])) {
			p.pos++
		}
		p.tok = token{kind: tokIdent, text: p.src[start:p.pos], pos: start}
	case strings.ContainsRune("+-*/(),", c):
		p.pos++
		p.tok = token{kind: tokOp, text: string(c), pos: start}
	default:
		p.pos++
		p.tok = token{kind: tokBad, text: string(c), pos: start}
	}
}

func (p *parser) isOp(ops string) bool {
	return p.tok.kind == tokOp && strings.Contains(ops, p.tok.text)
}

func (p *parser) expr(depth int) (evalFn, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested more than %d levels", maxDepth)
	}
	left, err := p.term(depth)
	for err == nil && p.isOp("+-") {
		op := p.tok.text
		p.next()
		var right evalFn
		if right, err = p.term(depth); err == nil {
			left = binary(op, left, right)
		}
	}
	return left, err
}

func (p *parser) term(depth int) (evalFn, error) {
	left, err := p.unary(depth)
	for err == nil && p.isOp("*/") {
		op := p.tok.text
		p.next()
		var right evalFn
		if right, err = p.unary(depth); err == nil {
			left = binary(op, left, right)
		}
	}
	return left, err
}

func (p *parser) unary(depth int) (evalFn, error) {
	if p.isOp("-") {
		if depth > maxDepth {
			return nil, p.errorf("nested more than %d levels", maxDepth)
		}
		p.next()
		f, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return func(v Vars) (float64, error) { x, err := f(v); return -x, err }, nil
	}
	return p.primary(depth)
}

func (p *parser) primary(depth int) (evalFn, error) {
	t := p.tok
	switch {
	case t.kind == tokNum:
		p.next()
		return func(Vars) (float64, error) { return t.num, nil }, nil
	case t.kind == tokIdent:
		p.next()
		if p.isOp("(") {
			return p.call(t, depth)
		}
		return variable(t.text, p)
	case p.isOp("("):
		p.next()
		f, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		return f, p.expect(")")
	case t.kind == tokEOF:
		return nil, p.errorf("unexpected end")
	}
	return nil, p.errorf("unexpected %q", t.text)
}

func (p *parser) expect(op string) error {
	if !p.isOp(op) {
		if p.tok.kind == tokEOF {
			return p.errorf("want %q, got the end", op)
		}
		return p.errorf("want %q, got %q", op, p.tok.text)
	}
	p.next()
	return nil
}

func variable(name string, p *parser) (evalFn, error) {
	switch name {
	case "value":
		return func(v Vars) (float64, error) { return v.Value, nil }, nil
	case "replicas":
		return func(v Vars) (float64, error) { return v.Replicas, nil }, nil
	}
	return nil, p.errorf("unknown variable %q (want value or replicas)", name)
}

// call parses a function's arguments after its name.
func (p *parser) call(name token, depth int) (evalFn, error) {
	p.next() // (
	var args []evalFn
	for {
		f, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		args = append(args, f)
		if !p.isOp(",") {
			break
		}
		p.next()
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	return function(name, args)
}

func function(name token, args []evalFn) (evalFn, error) {
	unaryFns := map[string]func(float64) float64{"ceil": math.Ceil, "floor": math.Floor, "round": math.Round}
	if fn, ok := unaryFns[name.text]; ok {
		if len(args) != 1 {
			return nil, fmt.Errorf("at %d: %s takes one argument, got %d", name.pos+1, name.text, len(args))
		}
		return func(v Vars) (float64, error) { x, err := args[0](v); return fn(x), err }, nil
	}
	pick := map[string]func(float64, float64) float64{"min": math.Min, "max": math.Max}[name.text]
	if pick == nil {
		return nil, fmt.Errorf("at %d: unknown function %q (want ceil, floor, round, min or max)", name.pos+1, name.text)
	}
	if len(args) < 2 {
		return nil, fmt.Errorf("at %d: %s takes two or more arguments, got %d", name.pos+1, name.text, len(args))
	}
	return func(v Vars) (float64, error) {
		acc, err := args[0](v)
		for _, a := range args[1:] {
			x, aerr := a(v)
			err = errors.Join(err, aerr)
			acc = pick(acc, x)
		}
		return acc, err
	}, nil
}

func binary(op string, l, r evalFn) evalFn {
	return func(v Vars) (float64, error) {
		a, err := l(v)
		if err != nil {
			return 0, err
		}
		b, err := r(v)
		if err != nil {
			return 0, err
		}
		switch op {
		case "+":
			return a + b, nil
		case "-":
			return a - b, nil
		case "*":
			return a * b, nil
		}
		if b == 0 {
			return 0, errors.New("division by zero")
		}
		return a / b, nil
	}
}
