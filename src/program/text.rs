//! Program text: one op per line, `#` comments, processes named `p0..p2`
//! (`p1 = fork(p0)` names the child), pages and lengths in decimal.
//!
//! ```text
//! # thread scenario: soft-dirty lost across a VMA merge
//! mmap(p0, 0, 1, rw-, memfd, shared, 0)
//! write(p0, 0)
//! clear_refs(p0)
//! mmap(p0, 1, 1, rw-, memfd, shared, 1)
//! migrate(p0, 0)
//! ```
//!
//! Printing and parsing are exact inverses on every program.

use std::fmt;

use crate::model::types::{MAX_PROCS, NPAGES};
use crate::op::{Advice, FileName, Op, Program, Prot, Target, OP_NAMES};

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.read() { 'r' } else { '-' };
        let w = if self.write() { 'w' } else { '-' };
        let x = if self.exec() { 'x' } else { '-' };
        write!(f, "{r}{w}{x}")
    }
}

fn file_name(f: FileName) -> &'static str {
    match f {
        FileName::Memfd => "memfd",
        FileName::Ext4 => "ext4",
        FileName::Ramfs => "ramfs",
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.name();
        match *self {
            Op::Mmap { p, addr, len, prot, target } => {
                write!(f, "{n}(p{p}, {addr}, {len}, {prot}, ")?;
                match target {
                    Target::Anon => write!(f, "anon)"),
                    Target::SharedAnon => write!(f, "shared-anon)"),
                    Target::File { file, shared, pgoff } => {
                        let m = if shared { "shared" } else { "private" };
                        write!(f, "{}, {m}, {pgoff})", file_name(file))
                    }
                }
            }
            Op::Munmap { p, addr, len }
            | Op::Mlock { p, addr, len }
            | Op::Munlock { p, addr, len }
            | Op::UffdRegister { p, addr, len }
            | Op::UffdUnregister { p, addr, len }
            | Op::UffdWp { p, addr, len }
            | Op::UffdUnwp { p, addr, len } => write!(f, "{n}(p{p}, {addr}, {len})"),
            Op::Mprotect { p, addr, len, prot } => write!(f, "{n}(p{p}, {addr}, {len}, {prot})"),
            Op::Madvise { p, addr, len, advice } => write!(f, "{n}(p{p}, {addr}, {len}, {})", advice.name()),
            Op::Mremap { p, addr, len, new } => write!(f, "{n}(p{p}, {addr}, {len}, {new})"),
            Op::Read { p, addr }
            | Op::Write { p, addr }
            | Op::Migrate { p, addr }
            | Op::MigrateStart { p, addr }
            | Op::MigrateFinish { p, addr }
            | Op::Pageout { p, addr }
            | Op::Writeback { p, addr }
            | Op::NumaHint { p, addr } => write!(f, "{n}(p{p}, {addr})"),
            Op::ClearRefs { p } | Op::UffdClose { p } | Op::Exit { p } => write!(f, "{n}(p{p})"),
            Op::Fork { parent, child, event_fork } => {
                if event_fork {
                    write!(f, "p{child} = {n}(p{parent}, event_fork)")
                } else {
                    write!(f, "p{child} = {n}(p{parent})")
                }
            }
            Op::Swapoff => write!(f, "{n}()"),
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// A parse error at a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// A token with its 1-based column.
#[derive(Clone, Copy)]
struct Tok<'a> {
    s: &'a str,
    col: usize,
}

struct LineParser<'a> {
    line: usize,
    args: Vec<Tok<'a>>,
    name: Tok<'a>,
    close_col: usize,
}

impl<'a> LineParser<'a> {
    fn err<T>(&self, col: usize, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { line: self.line, col, msg: msg.into() })
    }

    fn want(&self, n: usize, shape: &str) -> Result<(), ParseError> {
        if self.args.len() != n {
            let col = self.args.get(n).map_or(self.close_col, |t| t.col);
            return self.err(
                col,
                format!("{} takes {n} argument(s): {}({shape}), got {}", self.name.s, self.name.s, self.args.len()),
            );
        }
        Ok(())
    }

    fn proc(&self, i: usize) -> Result<u8, ParseError> {
        let t = self.args[i];
        parse_proc(t)
            .ok_or(())
            .or_else(|_| self.err(t.col, format!("expected a process p0..p{}, found `{}`", MAX_PROCS - 1, t.s)))
    }

    fn num(&self, i: usize, lo: u8, hi: u8, what: &str) -> Result<u8, ParseError> {
        let t = self.args[i];
        match t.s.parse::<u8>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => self.err(t.col, format!("expected {what} ({lo}..={hi}), found `{}`", t.s)),
        }
    }

    fn page(&self, i: usize) -> Result<u8, ParseError> {
        self.num(i, 0, NPAGES as u8 - 1, "a page")
    }

    fn len(&self, i: usize) -> Result<u8, ParseError> {
        self.num(i, 1, 4, "a length in pages")
    }

    fn prot(&self, i: usize) -> Result<Prot, ParseError> {
        let t = self.args[i];
        let b = t.s.as_bytes();
        let ok =
            b.len() == 3 && matches!(b[0], b'r' | b'-') && matches!(b[1], b'w' | b'-') && matches!(b[2], b'x' | b'-');
        if !ok {
            return self.err(t.col, format!("expected a protection like rw- or r-x, found `{}`", t.s));
        }
        Ok(Prot((b[0] == b'r') as u8 | ((b[1] == b'w') as u8) << 1 | ((b[2] == b'x') as u8) << 2))
    }
}

fn parse_proc(t: Tok) -> Option<u8> {
    let n: u8 = t.s.strip_prefix('p')?.parse().ok()?;
    (n < MAX_PROCS as u8 && t.s.len() == 2).then_some(n)
}

fn trim_tok(s: &str, col: usize) -> Tok<'_> {
    let lead = s.len() - s.trim_start().len();
    Tok { s: s.trim(), col: col + lead }
}

/// Parse one non-empty, comment-stripped line.
fn parse_line(line_no: usize, line: &str) -> Result<Op, ParseError> {
    let err = |col: usize, msg: String| Err(ParseError { line: line_no, col, msg });
    // Optional `pN =` (fork's child).
    let (lhs, rhs, rhs_col) = match line.find('=') {
        Some(i) => (Some(trim_tok(&line[..i], 1)), &line[i + 1..], i + 2),
        None => (None, line, 1),
    };
    let Some(open) = rhs.find('(') else {
        let t = trim_tok(rhs, rhs_col);
        return err(t.col, format!("expected `name(args)`, found `{}`", t.s));
    };
    let name = trim_tok(&rhs[..open], rhs_col);
    let Some(kind) = OP_NAMES.iter().position(|&n| n == name.s) else {
        return err(name.col, format!("unknown operation `{}` (known: {})", name.s, OP_NAMES.join(", ")));
    };
    let after = &rhs[open + 1..];
    let Some(close) = after.rfind(')') else {
        return err(rhs_col + rhs.len(), "missing `)`".into());
    };
    let trailing = trim_tok(&after[close + 1..], rhs_col + open + 1 + close + 1);
    if !trailing.s.is_empty() {
        return err(trailing.col, format!("unexpected `{}` after `)`", trailing.s));
    }
    let inner = &after[..close];
    let inner_col = rhs_col + open + 1;
    let mut args = Vec::new();
    if !inner.trim().is_empty() {
        let mut off = 0;
        for piece in inner.split(',') {
            let t = trim_tok(piece, inner_col + off);
            if t.s.is_empty() {
                return err(t.col, "empty argument".into());
            }
            args.push(t);
            off += piece.len() + 1;
        }
    }
    let lp = LineParser { line: line_no, args, name, close_col: inner_col + close };
    let is_fork = OP_NAMES[kind] == "fork";
    if let Some(l) = lhs {
        if !is_fork {
            return err(l.col, format!("only fork assigns a result (`p1 = fork(p0)`), found `{} =`", l.s));
        }
    } else if is_fork {
        return err(name.col, "fork names its child: `p1 = fork(p0)`".into());
    }
    let a = |n: usize, shape: &str| lp.want(n, shape);
    let op = match OP_NAMES[kind] {
        "mmap" => {
            if lp.args.len() == 5 {
                a(5, "p, addr, len, prot, anon|shared-anon")?;
                let t = lp.args[4];
                let target = match t.s {
                    "anon" => Target::Anon,
                    "shared-anon" => Target::SharedAnon,
                    _ => {
                        return lp.err(
                            t.col,
                            format!(
                                "expected anon or shared-anon, found `{}` (files take: file, shared|private, pgoff)",
                                t.s
                            ),
                        )
                    }
                };
                Op::Mmap { p: lp.proc(0)?, addr: lp.page(1)?, len: lp.len(2)?, prot: lp.prot(3)?, target }
            } else {
                a(7, "p, addr, len, prot, memfd|ext4|ramfs, shared|private, pgoff")?;
                let ft = lp.args[4];
                let file = match ft.s {
                    "memfd" => FileName::Memfd,
                    "ext4" => FileName::Ext4,
                    "ramfs" => FileName::Ramfs,
                    _ => return lp.err(ft.col, format!("expected memfd, ext4 or ramfs, found `{}`", ft.s)),
                };
                let st = lp.args[5];
                let shared = match st.s {
                    "shared" => true,
                    "private" => false,
                    _ => return lp.err(st.col, format!("expected shared or private, found `{}`", st.s)),
                };
                let target =
                    Target::File { file, shared, pgoff: lp.num(6, 0, NPAGES as u8 - 1, "a file page offset")? };
                Op::Mmap { p: lp.proc(0)?, addr: lp.page(1)?, len: lp.len(2)?, prot: lp.prot(3)?, target }
            }
        }
        "munmap" | "mlock" | "munlock" | "uffd_register" | "uffd_unregister" | "uffd_wp" | "uffd_unwp" => {
            a(3, "p, addr, len")?;
            let (p, addr, len) = (lp.proc(0)?, lp.page(1)?, lp.len(2)?);
            match OP_NAMES[kind] {
                "munmap" => Op::Munmap { p, addr, len },
                "mlock" => Op::Mlock { p, addr, len },
                "munlock" => Op::Munlock { p, addr, len },
                "uffd_register" => Op::UffdRegister { p, addr, len },
                "uffd_unregister" => Op::UffdUnregister { p, addr, len },
                "uffd_wp" => Op::UffdWp { p, addr, len },
                _ => Op::UffdUnwp { p, addr, len },
            }
        }
        "mprotect" => {
            a(4, "p, addr, len, prot")?;
            Op::Mprotect { p: lp.proc(0)?, addr: lp.page(1)?, len: lp.len(2)?, prot: lp.prot(3)? }
        }
        "madvise" => {
            a(4, "p, addr, len, MADV_*")?;
            let t = lp.args[3];
            let Some(&advice) = Advice::ALL.iter().find(|x| x.name() == t.s) else {
                let names: Vec<_> = Advice::ALL.iter().map(|x| x.name()).collect();
                return lp.err(t.col, format!("unknown advice `{}` (known: {})", t.s, names.join(", ")));
            };
            Op::Madvise { p: lp.proc(0)?, addr: lp.page(1)?, len: lp.len(2)?, advice }
        }
        "mremap" => {
            a(4, "p, addr, len, new_addr")?;
            Op::Mremap { p: lp.proc(0)?, addr: lp.page(1)?, len: lp.len(2)?, new: lp.page(3)? }
        }
        "read" | "write" | "migrate" | "migrate_start" | "migrate_finish" | "pageout" | "writeback" | "numa_hint" => {
            a(2, "p, addr")?;
            let (p, addr) = (lp.proc(0)?, lp.page(1)?);
            match OP_NAMES[kind] {
                "read" => Op::Read { p, addr },
                "write" => Op::Write { p, addr },
                "migrate" => Op::Migrate { p, addr },
                "migrate_start" => Op::MigrateStart { p, addr },
                "migrate_finish" => Op::MigrateFinish { p, addr },
                "pageout" => Op::Pageout { p, addr },
                "writeback" => Op::Writeback { p, addr },
                _ => Op::NumaHint { p, addr },
            }
        }
        "clear_refs" | "uffd_close" | "exit" => {
            a(1, "p")?;
            let p = lp.proc(0)?;
            match OP_NAMES[kind] {
                "clear_refs" => Op::ClearRefs { p },
                "uffd_close" => Op::UffdClose { p },
                _ => Op::Exit { p },
            }
        }
        "fork" => {
            let l = lhs.unwrap();
            let Some(child) = parse_proc(l) else {
                return err(l.col, format!("expected a process p0..p{} before `=`, found `{}`", MAX_PROCS - 1, l.s));
            };
            let event_fork = match lp.args.len() {
                1 => false,
                2 if lp.args[1].s == "event_fork" => true,
                2 => return lp.err(lp.args[1].col, format!("expected event_fork, found `{}`", lp.args[1].s)),
                _ => return lp.want(1, "parent[, event_fork]").map(|_| unreachable!()),
            };
            Op::Fork { parent: lp.proc(0)?, child, event_fork }
        }
        "swapoff" => {
            a(0, "")?;
            Op::Swapoff
        }
        _ => unreachable!(),
    };
    Ok(op)
}

/// Parse program text. Errors carry 1-based line and column.
pub fn parse(text: &str) -> Result<Program, ParseError> {
    let mut ops = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(c) => &raw[..c],
            None => raw,
        };
        if line.trim().is_empty() {
            continue;
        }
        ops.push(parse_line(i + 1, line)?);
    }
    Ok(Program { ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        let text = "\
mmap(p0, 0, 2, rw-, memfd, shared, 0)   # a comment
mmap(p0, 4, 1, r-x, anon)
mmap(p0, 6, 1, rw-, shared-anon)
p1 = fork(p0, event_fork)
p2 = fork(p1)
madvise(p0, 0, 1, MADV_DONTNEED)
swapoff()
";
        let p = parse(text).unwrap();
        assert_eq!(p.ops.len(), 7);
        assert_eq!(parse(&p.to_string()).unwrap(), p);
        assert_eq!(p.ops[3], Op::Fork { parent: 0, child: 1, event_fork: true });
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("write(p0, 1)\nwrite(p0, 99)\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 11));
        let e = parse("frobnicate(p0)").unwrap_err();
        assert_eq!((e.line, e.col), (1, 1));
        assert!(e.msg.contains("unknown operation"));
        let e = parse("  mprotect(p0, 0, 1, rwz)").unwrap_err();
        assert_eq!((e.line, e.col), (1, 22));
        let e = parse("fork(p0)").unwrap_err();
        assert!(e.msg.contains("names its child"));
        let e = parse("read(p0, 1").unwrap_err();
        assert!(e.msg.contains("missing `)`"));
        let e = parse("read(p7, 1)").unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
        let e = parse("read(p0)").unwrap_err();
        assert!(e.msg.contains("takes 2 argument"), "{}", e.msg);
    }
}
