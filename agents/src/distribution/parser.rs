//! The parser of distribution strings: recursive descent over characters, bounded in depth.

use super::{Expr, Function, Op, ParseError};

/// Recursive descent over characters:
///
/// ```text
/// expr    := term (('+' | '-') term)*
/// term    := unary (('*' | '/') unary)*
/// unary   := ('-' | '+') unary | power
/// power   := primary ('**' unary)?
/// primary := number | name '(' [arg (',' arg)*] ')' | '(' expr ')'
/// arg     := [name '='] expr
/// ```
pub(super) struct Parser<'a> {
    source: &'a str,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

/// Nesting deeper than this is refused, so a hostile string cannot overflow the stack.
const MAX_DEPTH: usize = 64;

impl<'a> Parser<'a> {
    pub(super) fn new(source: &'a str) -> Self {
        Parser {
            source,
            chars: source.chars().collect(),
            pos: 0,
            depth: 0,
        }
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            source: self.source.to_string(),
            column: at + 1,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        self.skip_ws();
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    pub(super) fn parse(mut self) -> Result<Expr, ParseError> {
        if self.peek().is_none() {
            return Err(self.error(0, "empty expression; give a number such as '1000'"));
        }
        let e = self.expr()?;
        match self.peek() {
            None => Ok(e),
            Some(c) => Err(self.error(self.pos, format!("unexpected '{c}'"))),
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(self.pos, "expression nested too deeply"));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.nested(|p| {
            let mut left = p.term()?;
            loop {
                let op = if p.eat('+') {
                    Op::Add
                } else if p.eat('-') {
                    Op::Sub
                } else {
                    return Ok(left);
                };
                let right = p.term()?;
                left = Expr::Binary(op, Box::new(left), Box::new(right));
            }
        })
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.peek() == Some('*') && !self.at_pow() {
                self.pos += 1;
                Op::Mul
            } else if self.eat('/') {
                Op::Div
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn at_pow(&mut self) -> bool {
        self.peek() == Some('*') && self.chars.get(self.pos + 1) == Some(&'*')
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.nested(|p| {
            if p.eat('-') {
                Ok(Expr::Neg(Box::new(p.unary()?)))
            } else if p.eat('+') {
                p.unary()
            } else {
                let base = p.primary()?;
                if p.eat_str("**") {
                    let exp = p.unary()?;
                    Ok(Expr::Binary(Op::Pow, Box::new(base), Box::new(exp)))
                } else {
                    Ok(base)
                }
            }
        })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let start = {
            self.skip_ws();
            self.pos
        };
        match self.peek() {
            None => Err(self.error(start, "expression ends where a value was expected")),
            Some('(') => {
                self.pos += 1;
                let e = self.expr()?;
                if !self.eat(')') {
                    return Err(self.error(self.pos, "missing ')'"));
                }
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let name = self.name();
                self.function_call(start, &name)
            }
            Some(c) => Err(self.error(
                start,
                format!("unexpected '{c}' where a value was expected"),
            )),
        }
    }

    fn name(&mut self) -> String {
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn number(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.chars.get(p.pos).is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos > s
        };
        let mut any = digits(self);
        if self.chars.get(self.pos) == Some(&'.') {
            self.pos += 1;
            any |= digits(self);
        }
        if !any {
            return Err(self.error(start, "a number needs digits"));
        }
        if matches!(self.chars.get(self.pos), Some('e') | Some('E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.chars.get(self.pos), Some('+') | Some('-')) {
                self.pos += 1;
            }
            if !digits(self) {
                self.pos = save;
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse::<f64>()
            .map(Expr::Number)
            .map_err(|_| self.error(start, format!("'{text}' is not a number")))
    }

    fn function_call(&mut self, start: usize, name: &str) -> Result<Expr, ParseError> {
        let Some(f) = Function::ALL.iter().copied().find(|f| f.name() == name) else {
            let known: Vec<String> = Function::ALL.iter().map(|f| f.signature()).collect();
            let hint = Function::ALL
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(name))
                .map(|f| format!(" (did you mean '{}'?)", f.name()))
                .unwrap_or_default();
            return Err(self.error(
                start,
                format!(
                    "unknown name '{name}'{hint}; the functions are {}",
                    known.join(", ")
                ),
            ));
        };
        if !self.eat('(') {
            return Err(self.error(
                self.pos,
                format!("'{name}' must be called: {}", f.signature()),
            ));
        }
        let (params, required) = f.params();
        let mut args: Vec<Option<Expr>> = vec![None; params.len()];
        let mut positional = 0;
        let mut seen_keyword = false;
        if !self.eat(')') {
            loop {
                let arg_start = {
                    self.skip_ws();
                    self.pos
                };
                // `name=` introduces a keyword argument; anything else is positional.
                let keyword = {
                    let save = self.pos;
                    let is_name = self.peek().is_some_and(|c| c.is_alphabetic() || c == '_');
                    let n = if is_name { self.name() } else { String::new() };
                    if !n.is_empty() && self.peek() == Some('=') {
                        self.pos += 1;
                        Some(n)
                    } else {
                        self.pos = save;
                        None
                    }
                };
                let value = self.expr()?;
                let slot = match keyword {
                    Some(k) => {
                        seen_keyword = true;
                        params.iter().position(|p| *p == k).ok_or_else(|| {
                            self.error(
                                arg_start,
                                format!("{name}() has no parameter '{k}': {}", f.signature()),
                            )
                        })?
                    }
                    None => {
                        if seen_keyword {
                            return Err(self.error(
                                arg_start,
                                "a positional argument cannot follow a keyword argument",
                            ));
                        }
                        positional += 1;
                        positional - 1
                    }
                };
                if slot >= params.len() {
                    return Err(
                        self.error(arg_start, format!("too many arguments: {}", f.signature()))
                    );
                }
                if args[slot].is_some() {
                    return Err(self.error(
                        arg_start,
                        format!("'{}' given twice: {}", params[slot], f.signature()),
                    ));
                }
                args[slot] = Some(value);
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.error(self.pos, format!("expected ',' or ')' in {name}(...)")));
                }
            }
        }
        if let Some(missing) = (0..required).find(|&i| args[i].is_none()) {
            return Err(self.error(
                start,
                format!(
                    "{name}() is missing '{}': {}",
                    params[missing],
                    f.signature()
                ),
            ));
        }
        Ok(Expr::Call(f, args))
    }
}
