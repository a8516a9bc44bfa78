//! The condition grammar: a rule's `when` string, parsed once into a [`Cond`].
//!
//! ```text
//! cond    := or ;  or := and ("or" and)* ;  and := unary ("and" unary)*
//! unary   := "not" unary | "(" cond ")" | "all(" cond ("," cond)* ")" | "any(" cond ("," cond)* ")"
//!          | pred | cmp
//! pred    := "alive" | "verdict(" word ("," word)* ")" | "finding(" word ("," word)* ")"
//! cmp     := value OP value                     OP := > >= < <= == !=
//! value   := term (("+"|"-") term)* ;  term := atom (("*"|"/") atom)*
//! atom    := number | "-" atom | "(" value ")" | call | series
//! call    := AGG "(" series "," duration ")"    AGG := avg min max last rate increase mean count pNN
//!          | "last(" series ")" | "min_last(" series "," N ")" | "max_last(" series "," N ")"
//!          | "zscore(" value ")"
//! series  := [A-Za-z0-9_.:-]+ ["{" tags "}"] | '"' name ["{" tags "}"] '"'
//! number  := float ["%"]                        (5% = 0.05)
//! ```
//!
//! A bare series in a value means `last(series)`. Everything that can be checked without data is
//! checked here (function names, series names, histogram-only functions, windows against the
//! history length, `zscore` only in `jvm` scope), with the byte offset of the offending token.

use std::collections::BTreeSet;
use std::fmt;

use crate::series::{self, Kind};
use crate::text::fmt_ms;

/// A compiled condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// True when any part is true (`or`, `any(...)`).
    Or(Vec<Cond>),
    /// True when every part is true (`and`, `all(...)`).
    And(Vec<Cond>),
    /// True when the inner condition is false (including when it is false because of absent data).
    Not(Box<Cond>),
    /// The JVM process is alive (app scope: any instance is).
    Alive,
    /// The instance's verdict is one of these (app scope: any instance's).
    Verdict(Vec<String>),
    /// The instance has one of these findings (app scope: any instance has).
    Finding(Vec<String>),
    /// A comparison of two values; false when either is absent.
    Cmp(Box<Value>, CmpOp, Box<Value>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// A windowed aggregation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Agg {
    /// Mean of the points in the window.
    Avg,
    /// Smallest point in the window.
    Min,
    /// Largest point in the window.
    Max,
    /// Newest point in the window.
    Last,
    /// Per-second rate of a cumulative counter (resets counted from 0).
    Rate,
    /// Increase of a cumulative counter over the window (resets counted from 0).
    Increase,
    /// Histogram: Δsum / Δcount (milliseconds for timers).
    Mean,
    /// Histogram: Δcount.
    Count,
    /// Histogram: the given percentile (0 < q < 100), interpolated within bucket bounds.
    Pct(f64),
}

/// A numeric value; evaluation may find it absent.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A literal; `pct` when written with `%` (the value is already divided by 100).
    Num {
        /// The value.
        v: f64,
        /// Written as a percentage.
        pct: bool,
    },
    /// Unary minus.
    Neg(Box<Value>),
    /// Arithmetic; division by zero is absent.
    Bin(Box<Value>, BinOp, Box<Value>),
    /// The newest point of a series (a bare series name, or `last(series)`).
    Last(String),
    /// A windowed aggregation.
    Agg {
        /// The function.
        func: Agg,
        /// The series key.
        series: String,
        /// The window length.
        window_ms: u64,
    },
    /// `min_last(series, n)` / `max_last(series, n)`: over the newest `n` points.
    LastN {
        /// `max_last` when true, `min_last` when false.
        max: bool,
        /// The series key.
        series: String,
        /// How many points.
        n: usize,
    },
    /// Robust z-score of the inner value among the instances of the same app.
    ZScore {
        /// The per-instance value.
        inner: Box<Value>,
        /// Index of this `zscore` within its rule (for the per-evaluation cache).
        id: usize,
    },
}

/// A parse or check error at a byte offset of the expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the expression text.
    pub at: usize,
    /// What is wrong and what was expected.
    pub msg: String,
}

/// What the parser checks against.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest window allowed (the controller's `history`).
    pub max_window_ms: u64,
    /// The most points a series keeps (bounds `min_last`/`max_last`).
    pub max_points: usize,
    /// The rule is app scope (`zscore` is not allowed there).
    pub app_scope: bool,
}

const FUNCTIONS: &str = "avg, min, max, last, rate, increase, mean, count, p50, p90, p95, p99 (any pNN), \
                         min_last, max_last, zscore, all, any, not, verdict, finding";

/// Deepest nesting of parentheses, `not` and unary minus.
const MAX_DEPTH: usize = 64;

const KEYWORDS: &[&str] = &["and", "or", "not", "alive"];

/// Parses and checks a condition.
pub fn parse(src: &str, limits: Limits) -> Result<Cond, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, limits, zscores: 0, in_zscore: false, depth: 0, src_len: src.len() };
    let cond = p.cond()?;
    match p.peek() {
        Tok::End => Ok(cond),
        t => Err(p.err_here(format!("unexpected {}, expected `and`, `or` or the end", t.describe()))),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64, bool),
    Dur(u64),
    Word(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Cmp(CmpOp),
    Bin(BinOp),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(v, _) => format!("number `{v}`"),
            Tok::Dur(ms) => format!("duration `{}`", fmt_ms(*ms)),
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Cmp(op) => format!("`{op}`"),
            Tok::Bin(op) => format!("`{op}`"),
            Tok::End => "end of expression".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    at: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b',' => Some(Tok::Comma),
            b'+' => Some(Tok::Bin(BinOp::Add)),
            b'-' => Some(Tok::Bin(BinOp::Sub)),
            b'*' => Some(Tok::Bin(BinOp::Mul)),
            b'/' => Some(Tok::Bin(BinOp::Div)),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token { tok, at });
            i += 1;
            continue;
        }
        if matches!(c, b'>' | b'<' | b'=' | b'!') {
            let eq = b.get(i + 1) == Some(&b'=');
            let op = match (c, eq) {
                (b'>', true) => CmpOp::Ge,
                (b'>', false) => CmpOp::Gt,
                (b'<', true) => CmpOp::Le,
                (b'<', false) => CmpOp::Lt,
                (b'=', true) => CmpOp::Eq,
                (b'!', true) => CmpOp::Ne,
                _ => return Err(ExprError { at, msg: format!("unexpected `{}`, expected `==` or `!=`", c as char) }),
            };
            i += if eq { 2 } else { 1 };
            out.push(Token { tok: Tok::Cmp(op), at });
            continue;
        }
        if c == b'"' {
            let rest = &src[i + 1..];
            let end = rest.find('"').ok_or(ExprError { at, msg: "unterminated string, expected `\"`".into() })?;
            out.push(Token { tok: Tok::Str(rest[..end].to_string()), at });
            i += end + 2;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            // exponent: 1e3, 2.5E-2
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let j = if matches!(b.get(i + 1), Some(b'+' | b'-')) { i + 2 } else { i + 1 };
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            if i < b.len() && b[i].is_ascii_alphabetic() {
                // a duration: 100ms, 30s, 5m, 1h30m
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                let text = &src[at..i];
                let d = humantime::parse_duration(text).map_err(|e| ExprError {
                    at,
                    msg: format!("bad duration `{text}` ({e}), expected e.g. 100ms, 30s, 5m, 1h"),
                })?;
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                out.push(Token { tok: Tok::Dur(ms), at });
                continue;
            }
            let text = &src[at..i];
            let v: f64 = text
                .parse()
                .map_err(|_| ExprError { at, msg: format!("bad number `{text}`, expected e.g. 100, 0.5, 5%") })?;
            let pct = b.get(i) == Some(&b'%');
            if pct {
                i += 1;
            }
            out.push(Token { tok: Tok::Num(if pct { v / 100.0 } else { v }, pct), at });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && series::is_name_char(b[i] as char) {
                i += 1;
            }
            if b.get(i) == Some(&b'{') {
                let end =
                    src[i..].find('}').ok_or(ExprError { at: i, msg: "unterminated tags, expected `}`".into() })?;
                i += end + 1;
            }
            out.push(Token { tok: Tok::Word(src[at..i].to_string()), at });
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        return Err(ExprError { at, msg: format!("unexpected character `{ch}`") });
    }
    out.push(Token { tok: Tok::End, at: src.len() });
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    limits: Limits,
    zscores: usize,
    in_zscore: bool,
    depth: usize,
    src_len: usize,
}

type PResult<T> = Result<T, ExprError>;

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).map_or(&Tok::End, |t| &t.tok)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.src_len, |t| t.at)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err_here(&self, msg: String) -> ExprError {
        ExprError { at: self.at(), msg }
    }

    fn expect(&mut self, want: &Tok, what: &str) -> PResult<()> {
        if self.peek() == want {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_here(format!("unexpected {}, expected {what}", self.peek().describe())))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn cond(&mut self) -> PResult<Cond> {
        let mut parts = vec![self.and()?];
        while self.is_word("or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Cond::Or(parts) })
    }

    fn and(&mut self) -> PResult<Cond> {
        let mut parts = vec![self.unary()?];
        while self.is_word("and") {
            self.pos += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Cond::And(parts) })
    }

    /// Counts nesting so that no input can exhaust the stack.
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here(format!("expression nested too deeply, expected at most {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn unary(&mut self) -> PResult<Cond> {
        self.enter()?;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn atom(&mut self) -> PResult<Value> {
        self.enter()?;
        let r = self.atom_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> PResult<Cond> {
        let call = *self.peek_at(1) == Tok::LParen;
        match self.peek().clone() {
            Tok::Word(w) if w == "not" => {
                self.pos += 1;
                Ok(Cond::Not(Box::new(self.unary()?)))
            }
            Tok::Word(w) if w == "alive" => {
                self.pos += 1;
                Ok(Cond::Alive)
            }
            Tok::Word(w) if call && (w == "all" || w == "any") => {
                self.pos += 2;
                let mut parts = vec![self.cond()?];
                while *self.peek() == Tok::Comma {
                    self.pos += 1;
                    parts.push(self.cond()?);
                }
                self.expect(&Tok::RParen, "`,` or `)`")?;
                Ok(if parts.len() == 1 {
                    parts.remove(0)
                } else if w == "all" {
                    Cond::And(parts)
                } else {
                    Cond::Or(parts)
                })
            }
            Tok::Word(w) if call && (w == "verdict" || w == "finding") => {
                self.pos += 2;
                let known = if w == "verdict" { series::VERDICTS } else { series::FINDINGS };
                let mut words = Vec::new();
                loop {
                    let at = self.at();
                    match self.bump() {
                        Tok::Word(x) if known.contains(&x.as_str()) => words.push(x),
                        t => {
                            return Err(ExprError {
                                at,
                                msg: format!(
                                    "unexpected {} in {w}(), expected one of {}",
                                    t.describe(),
                                    known.join(", ")
                                ),
                            })
                        }
                    }
                    match self.bump() {
                        Tok::Comma => {}
                        Tok::RParen => break,
                        t => {
                            self.pos -= 1;
                            return Err(self.err_here(format!("unexpected {}, expected `,` or `)`", t.describe())));
                        }
                    }
                }
                Ok(if w == "verdict" { Cond::Verdict(words) } else { Cond::Finding(words) })
            }
            Tok::LParen => {
                // Either a parenthesised condition or a comparison starting with "(value)".
                let start = self.pos;
                self.pos += 1;
                let as_cond = self.cond().and_then(|c| {
                    self.expect(&Tok::RParen, "`)`")?;
                    Ok(c)
                });
                match as_cond {
                    Ok(c) if !matches!(self.peek(), Tok::Cmp(_) | Tok::Bin(_)) => Ok(c),
                    Ok(_) => {
                        self.pos = start;
                        self.cmp()
                    }
                    Err(e1) => {
                        self.pos = start;
                        // Report whichever reading got further.
                        self.cmp().map_err(|e2| if e2.at >= e1.at { e2 } else { e1 })
                    }
                }
            }
            _ => self.cmp(),
        }
    }

    fn cmp(&mut self) -> PResult<Cond> {
        let lhs = self.value()?;
        let op = match self.peek() {
            Tok::Cmp(op) => *op,
            t => {
                let hint = if matches!(lhs, Value::Last(_)) && matches!(t, Tok::End | Tok::RParen) {
                    " (a series alone is not a condition)"
                } else {
                    ""
                };
                return Err(self.err_here(format!(
                    "unexpected {}, expected a comparison (>, >=, <, <=, ==, !=){hint}",
                    t.describe()
                )));
            }
        };
        self.pos += 1;
        let rhs = self.value()?;
        Ok(Cond::Cmp(Box::new(lhs), op, Box::new(rhs)))
    }

    fn value(&mut self) -> PResult<Value> {
        let mut v = self.term()?;
        while let Tok::Bin(op @ (BinOp::Add | BinOp::Sub)) = *self.peek() {
            self.pos += 1;
            v = Value::Bin(Box::new(v), op, Box::new(self.term()?));
        }
        Ok(v)
    }

    fn term(&mut self) -> PResult<Value> {
        let mut v = self.atom()?;
        while let Tok::Bin(op @ (BinOp::Mul | BinOp::Div)) = *self.peek() {
            self.pos += 1;
            v = Value::Bin(Box::new(v), op, Box::new(self.atom()?));
        }
        Ok(v)
    }

    fn atom_inner(&mut self) -> PResult<Value> {
        let at = self.at();
        match self.peek().clone() {
            Tok::Num(v, pct) => {
                self.pos += 1;
                Ok(Value::Num { v, pct })
            }
            Tok::Bin(BinOp::Sub) => {
                self.pos += 1;
                Ok(Value::Neg(Box::new(self.atom()?)))
            }
            Tok::LParen => {
                self.pos += 1;
                let v = self.value()?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(v)
            }
            Tok::Word(w) if *self.peek_at(1) == Tok::LParen => {
                self.pos += 2;
                self.call(&w, at)
            }
            Tok::Word(_) | Tok::Str(_) => Ok(Value::Last(self.series()?.0)),
            t => Err(self.err_here(format!("unexpected {}, expected a number, a series or a function", t.describe()))),
        }
    }

    /// Reads a series argument: returns its key and kind.
    fn series(&mut self) -> PResult<(String, Kind)> {
        let at = self.at();
        let name = match self.bump() {
            Tok::Word(w) if KEYWORDS.contains(&w.as_str()) => {
                return Err(ExprError { at, msg: format!("unexpected keyword `{w}`, expected a series") })
            }
            Tok::Word(w) => w,
            Tok::Str(s) => s.trim().to_string(),
            t => return Err(ExprError { at, msg: format!("unexpected {}, expected a series", t.describe()) }),
        };
        let kind = series::classify(&name).map_err(|msg| ExprError { at, msg })?;
        Ok((name, kind))
    }

    fn call(&mut self, f: &str, at: usize) -> PResult<Value> {
        let agg = match f {
            "avg" => Some(Agg::Avg),
            "min" => Some(Agg::Min),
            "max" => Some(Agg::Max),
            "last" => Some(Agg::Last),
            "rate" => Some(Agg::Rate),
            "increase" => Some(Agg::Increase),
            "mean" => Some(Agg::Mean),
            "count" => Some(Agg::Count),
            _ => percentile(f).map(Agg::Pct),
        };
        if let Some(func) = agg {
            let sat = self.at();
            let (series, kind) = self.series()?;
            if func == Agg::Last && *self.peek() == Tok::RParen {
                self.pos += 1;
                return Ok(Value::Last(series));
            }
            match func {
                Agg::Mean | Agg::Count | Agg::Pct(_) if kind != Kind::App => {
                    return Err(ExprError {
                        at: sat,
                        msg: format!("`{f}` needs an application timer series app.NAME, `{series}` is not one"),
                    })
                }
                Agg::Rate | Agg::Increase if kind == Kind::Gauge => {
                    return Err(ExprError {
                        at: sat,
                        msg: format!(
                            "`{f}` needs a cumulative counter, expected one of {} or app.NAME; `{series}` is a gauge",
                            series::COUNTERS.join(", ")
                        ),
                    })
                }
                _ => {}
            }
            self.expect(&Tok::Comma, "`,` and a window duration")?;
            let wat = self.at();
            let window_ms = match self.bump() {
                Tok::Dur(ms) => ms,
                t => {
                    return Err(ExprError {
                        at: wat,
                        msg: format!("unexpected {}, expected a window duration like 30s or 5m", t.describe()),
                    })
                }
            };
            if window_ms == 0 {
                return Err(ExprError { at: wat, msg: "window of zero, expected a positive duration".into() });
            }
            if window_ms > self.limits.max_window_ms {
                return Err(ExprError {
                    at: wat,
                    msg: format!(
                        "window {} is longer than the history ({}), expected at most {} (raise [controller] history)",
                        fmt_ms(window_ms),
                        fmt_ms(self.limits.max_window_ms),
                        fmt_ms(self.limits.max_window_ms)
                    ),
                });
            }
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(Value::Agg { func, series, window_ms });
        }
        match f {
            "min_last" | "max_last" => {
                let (series, _) = self.series()?;
                self.expect(&Tok::Comma, "`,` and a number of points")?;
                let nat = self.at();
                let max_n = self.limits.max_points;
                let n = match self.bump() {
                    Tok::Num(v, false) if v >= 1.0 && v.fract() == 0.0 && v <= max_n as f64 => v as usize,
                    t => {
                        return Err(ExprError {
                            at: nat,
                            msg: format!("unexpected {}, expected a whole number of points 1..={max_n}", t.describe()),
                        })
                    }
                };
                self.expect(&Tok::RParen, "`)`")?;
                Ok(Value::LastN { max: f == "max_last", series, n })
            }
            "zscore" => {
                if self.limits.app_scope {
                    return Err(ExprError {
                        at,
                        msg: "`zscore` compares an instance with its peers, expected it only in scope = \"jvm\" rules"
                            .into(),
                    });
                }
                if self.in_zscore {
                    return Err(ExprError { at, msg: "`zscore` inside `zscore`, expected a plain value".into() });
                }
                self.in_zscore = true;
                let inner = self.value();
                self.in_zscore = false;
                let inner = inner?;
                self.expect(&Tok::RParen, "`)`")?;
                let id = self.zscores;
                self.zscores += 1;
                Ok(Value::ZScore { inner: Box::new(inner), id })
            }
            _ => Err(ExprError { at, msg: format!("unknown function `{f}`, expected one of {FUNCTIONS}") }),
        }
    }
}

/// `p50` -> 50, `p99.9` -> 99.9; None when `f` is not a percentile name in (0, 100).
fn percentile(f: &str) -> Option<f64> {
    let q: f64 = f.strip_prefix('p')?.parse().ok()?;
    (q > 0.0 && q < 100.0).then_some(q)
}

// ---------------------------------------------------------------------------------------------
// Queries and display

impl Cond {
    /// Adds every series key this condition reads to `out`.
    pub fn collect_series(&self, out: &mut BTreeSet<String>) {
        match self {
            Cond::Or(v) | Cond::And(v) => v.iter().for_each(|c| c.collect_series(out)),
            Cond::Not(c) => c.collect_series(out),
            Cond::Alive | Cond::Verdict(_) | Cond::Finding(_) => {}
            Cond::Cmp(a, _, b) => {
                a.collect_series(out);
                b.collect_series(out);
            }
        }
    }

    /// How many `zscore` calls this condition has.
    pub fn zscore_count(&self) -> usize {
        match self {
            Cond::Or(v) | Cond::And(v) => v.iter().map(Cond::zscore_count).sum(),
            Cond::Not(c) => c.zscore_count(),
            Cond::Alive | Cond::Verdict(_) | Cond::Finding(_) => 0,
            Cond::Cmp(a, _, b) => a.zscore_count() + b.zscore_count(),
        }
    }
}

impl Value {
    /// Adds every series key this value reads to `out`.
    pub fn collect_series(&self, out: &mut BTreeSet<String>) {
        match self {
            Value::Num { .. } => {}
            Value::Neg(v) | Value::ZScore { inner: v, .. } => v.collect_series(out),
            Value::Bin(a, _, b) => {
                a.collect_series(out);
                b.collect_series(out);
            }
            Value::Last(s) | Value::Agg { series: s, .. } | Value::LastN { series: s, .. } => {
                out.insert(s.clone());
            }
        }
    }

    /// How many `zscore` calls this value has.
    pub fn zscore_count(&self) -> usize {
        match self {
            Value::Num { .. } | Value::Last(_) | Value::Agg { .. } | Value::LastN { .. } => 0,
            Value::Neg(v) => v.zscore_count(),
            Value::ZScore { inner, .. } => 1 + inner.zscore_count(),
            Value::Bin(a, _, b) => a.zscore_count() + b.zscore_count(),
        }
    }

    fn prec(&self) -> u8 {
        match self {
            Value::Bin(_, BinOp::Add | BinOp::Sub, _) => 1,
            Value::Bin(_, BinOp::Mul | BinOp::Div, _) => 2,
            _ => 3,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        })
    }
}

impl fmt::Display for BinOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        })
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agg::Avg => f.write_str("avg"),
            Agg::Min => f.write_str("min"),
            Agg::Max => f.write_str("max"),
            Agg::Last => f.write_str("last"),
            Agg::Rate => f.write_str("rate"),
            Agg::Increase => f.write_str("increase"),
            Agg::Mean => f.write_str("mean"),
            Agg::Count => f.write_str("count"),
            Agg::Pct(q) => write!(f, "p{q}"),
        }
    }
}

fn fmt_series(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if s.chars().all(series::is_name_char) || (s.contains('{') && !s.contains(' ')) {
        f.write_str(s)
    } else {
        write!(f, "\"{s}\"")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num { v, pct: true } => write!(f, "{}%", (v * 100.0 * 1e9).round() / 1e9),
            Value::Num { v, pct: false } => write!(f, "{v}"),
            Value::Neg(v) if v.prec() < 3 => write!(f, "-({v})"),
            Value::Neg(v) => write!(f, "-{v}"),
            Value::Bin(a, op, b) => {
                let p = self.prec();
                if a.prec() < p {
                    write!(f, "({a})")?;
                } else {
                    write!(f, "{a}")?;
                }
                write!(f, " {op} ")?;
                if b.prec() <= p && b.prec() < 3 {
                    write!(f, "({b})")
                } else {
                    write!(f, "{b}")
                }
            }
            Value::Last(s) => fmt_series(f, s),
            Value::Agg { func, series, window_ms } => {
                write!(f, "{func}(")?;
                fmt_series(f, series)?;
                write!(f, ", {})", fmt_ms(*window_ms))
            }
            Value::LastN { max, series, n } => {
                write!(f, "{}(", if *max { "max_last" } else { "min_last" })?;
                fmt_series(f, series)?;
                write!(f, ", {n})")
            }
            Value::ZScore { inner, .. } => write!(f, "zscore({inner})"),
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Or(parts) => join(f, parts, " or ", |c| matches!(c, Cond::Or(_))),
            Cond::And(parts) => join(f, parts, " and ", |c| matches!(c, Cond::Or(_) | Cond::And(_))),
            Cond::Not(c) if matches!(**c, Cond::Or(_) | Cond::And(_) | Cond::Cmp(..)) => write!(f, "not ({c})"),
            Cond::Not(c) => write!(f, "not {c}"),
            Cond::Alive => f.write_str("alive"),
            Cond::Verdict(w) => write!(f, "verdict({})", w.join(", ")),
            Cond::Finding(w) => write!(f, "finding({})", w.join(", ")),
            Cond::Cmp(a, op, b) => write!(f, "{a} {op} {b}"),
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, parts: &[Cond], sep: &str, paren: impl Fn(&Cond) -> bool) -> fmt::Result {
    for (i, c) in parts.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if paren(c) {
            write!(f, "({c})")?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits { max_window_ms: 900_000, max_points: 902, app_scope: false };

    fn ok(s: &str) -> String {
        match parse(s, L) {
            Ok(c) => c.to_string(),
            Err(e) => panic!("{s}: {} at {}", e.msg, e.at),
        }
    }

    fn err(s: &str) -> ExprError {
        parse(s, L).expect_err(s)
    }

    #[test]
    fn parses_the_examples() {
        let table = [
            ("mean(app.latency, 5m) > 100", "mean(app.latency, 5m) > 100"),
            ("rate(app.requests, 10m) < 1", "rate(app.requests, 10m) < 1"),
            (
                "rate(app.errors, 1m) > 5% * rate(app.requests, 1m)",
                "rate(app.errors, 1m) > 5% * rate(app.requests, 1m)",
            ),
            (
                "rate(gc.time_s, 30s) > 50% or min_last(gc.heap_after_ratio, 3) > 90%",
                "rate(gc.time_s, 30s) > 50% or min_last(gc.heap_after_ratio, 3) > 90%",
            ),
            ("alive and heartbeat.age_s > 10", "alive and heartbeat.age_s > 10"),
            ("verdict(crashed, killed) or finding(oom)", "verdict(crashed, killed) or finding(oom)"),
            ("zscore(p99(app.latency, 1m)) > 3", "zscore(p99(app.latency, 1m)) > 3"),
            ("abs_missing > 1 or (alive)", ""),
            ("(a.b)", ""),
            ("not (heap.used > 1 and alive)", "not (heap.used > 1 and alive)"),
            ("(heap.used + 1) * 2 > heap.max", "(heap.used + 1) * 2 > heap.max"),
            ("(alive or alive) and alive", "(alive or alive) and alive"),
            ("all(alive, heap.used > 1) and any(alive)", "(alive and heap.used > 1) and alive"),
            ("\"app.latency{route=/x}\" > 1", "app.latency{route=/x} > 1"),
            ("app.latency{route=/x} >= -1", "app.latency{route=/x} >= -1"),
            ("p99.9(app.latency, 30s) > 1e3", "p99.9(app.latency, 30s) > 1000"),
            ("last(heap.used) - last(heap.used, 1m) != 0", "heap.used - last(heap.used, 1m) != 0"),
            ("heap.used / heap.max > 0.9", "heap.used / heap.max > 0.9"),
            ("heap.used - (heap.max - 1) > 0", "heap.used - (heap.max - 1) > 0"),
        ];
        for (src, want) in table {
            if want.is_empty() {
                assert!(parse(src, L).is_err(), "{src}");
            } else {
                assert_eq!(ok(src), want, "{src}");
                // Display is itself parseable to the same tree.
                assert_eq!(parse(&ok(src), L), parse(src, L), "{src}");
            }
        }
    }

    #[test]
    fn errors_point_at_the_token() {
        let e = err("avgg(heap.used, 1m) > 1");
        assert_eq!(e.at, 0);
        assert!(e.msg.contains("unknown function `avgg`, expected one of avg, min"), "{}", e.msg);
        let e = err("avg(heap.usd, 1m) > 1");
        assert_eq!(e.at, 4);
        assert!(e.msg.contains("unknown metric `heap.usd`"), "{}", e.msg);
        let e = err("avg(heap.used, 2h) > 1");
        assert_eq!(e.at, 15);
        assert!(e.msg.contains("longer than the history"), "{}", e.msg);
        let e = err("mean(heap.used, 1m) > 1");
        assert!(e.msg.contains("application timer"), "{}", e.msg);
        let e = err("rate(heap.used, 1m) > 1");
        assert!(e.msg.contains("gauge"), "{}", e.msg);
        let e = err("heap.used >");
        assert_eq!(e.at, 11);
        let e = err("heap.used");
        assert!(e.msg.contains("not a condition"), "{}", e.msg);
        assert!(err("verdict(dead)").msg.contains("expected one of running"));
        assert!(err("heap.used > 1 heap.max").msg.contains("expected `and`"));
        assert!(err("min_last(heap.used, 0) > 1").msg.contains("whole number"));
        assert!(err("avg(heap.used, 0s) > 1").msg.contains("zero"));
        assert!(err("heap.used > 1 &&").msg.contains("unexpected character"));
        assert!(err("heap.used = 1").msg.contains("expected `==`"));
        assert!(err("\"heap.used > 1").msg.contains("unterminated"));
        let app = Limits { app_scope: true, ..L };
        assert!(parse("zscore(heap.used) > 3", app).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = format!("{}alive{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(err(&deep).msg.contains("nested too deeply"));
        assert!(err(&"not ".repeat(100_000)).msg.contains("nested too deeply"));
        let deep = format!("{}1{} > 0", "(".repeat(100_000), ")".repeat(100_000));
        assert!(err(&deep).msg.contains("nested too deeply"));
        assert!(err(&format!("{}1 > 0", "-".repeat(100_000))).msg.contains("nested too deeply"));
        let ok_nesting = format!("{}alive{}", "(".repeat(30), ")".repeat(30));
        assert!(parse(&ok_nesting, L).is_ok());
        let flat = vec!["heap.used > 1"; 500].join(" and ");
        assert!(parse(&flat, L).is_ok());
    }

    #[test]
    fn no_panic_on_junk() {
        for s in [
            "",
            "(",
            ")",
            "((((",
            "not",
            "all(",
            "verdict(",
            "1 >",
            "é > 1",
            "a{",
            "1e",
            "5%%",
            "\"",
            "-",
            "p0(x,1s)>1",
        ] {
            let _ = parse(s, L);
        }
    }
}
