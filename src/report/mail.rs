//! `mail.txt`: the report as a plain-text mail to linux-mm, every line at most
//! [`MAIL_WIDTH`] characters.

use std::fmt::Write as _;

use super::measured::TestResult;
use super::specs::{Fix, Spec};
use super::{Case, Inputs, MAIL_WIDTH};
use crate::judge::affected::{self, Affected};
use crate::kernel_check::{program_hash, KernelResult, ResultsDb};
use crate::model::Kernel;

pub struct MailInput<'a> {
    pub spec: Option<&'static Spec>,
    pub cases: &'a [Case],
    pub inputs: &'a Inputs,
    pub confirmed: bool,
}

/// Text wrapped to 72 columns, every line after `indent`.
fn para(s: &mut String, text: &str, indent: &str) {
    let o = textwrap::Options::new(72)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .initial_indent(indent)
        .subsequent_indent(indent);
    for l in textwrap::wrap(text, o) {
        let _ = writeln!(s, "{}", l.trim_end());
    }
    s.push('\n');
}

fn heading(s: &mut String, h: &str) {
    let _ = writeln!(s, "{h}\n{}\n", "-".repeat(h.len()));
}

/// The report.
pub fn render(m: &MailInput) -> String {
    let mut s = String::new();
    let first = &m.cases[0];
    let subject = match m.spec {
        Some(spec) => spec.subject.to_string(),
        None => subject_of_file(first),
    };
    let tag = if m.confirmed { "[BUG]" } else { "[BUG, model only]" };
    // A header longer than the mail's lines is folded (RFC 5322).
    let o =
        textwrap::Options::new(MAIL_WIDTH).word_splitter(textwrap::WordSplitter::NoHyphenation).subsequent_indent(" ");
    for l in textwrap::wrap(&format!("Subject: {tag} {subject}"), o) {
        let _ = writeln!(s, "{}", l.trim_end());
    }
    s.push_str("To: linux-mm@kvack.org\n\n");
    match m.spec {
        Some(spec) => para(&mut s, spec.loses, ""),
        None => para(&mut s, &super::description(&first.text), ""),
    }
    para(
        &mut s,
        &format!(
            "Found by ptediff, a differential fuzzer of a model of the kernel's page-table code, and checked on \
         real kernels: Debian's 6.1.y, 6.12.y, 6.18.y and 7.3 kernels booted under QEMU (two NUMA nodes, zram \
         swap){}. Every number here was measured there; where only the model says so, it says \"model \
         only\".",
            if matches!(m.spec, Some(Spec { fix: Fix::Patch { .. }, .. })) {
                ", and the same sources built without and with the fix below"
            } else {
                ""
            }
        ),
        "",
    );

    heading(&mut s, "The program");
    para(&mut s, &format!("Minimized by ptediff (reproducers/{n}.ptd; in C: reproducers/{n}.c):", n = first.name), "");
    for (i, op) in first.repro.program.ops.iter().enumerate() {
        let _ = writeln!(s, "  {:>2}. {op}", i + 1);
    }
    if crate::emit_c::race::window(&first.repro.program).is_ok_and(|w| w.finish == first.repro.program.ops.len()) {
        let _ = writeln!(s, "      (the migration completes after the last step)");
    }
    s.push('\n');
    para(&mut s, &legend(&first.repro.program), "");

    heading(&mut s, "What happens");
    match m.spec {
        Some(spec) => {
            for p in spec.mechanism {
                para(&mut s, p, "");
            }
        }
        None => para(&mut s, "(no analysis beyond the reproducer's own comment above: model only)", ""),
    }

    heading(&mut s, "Affected kernels");
    affected_table(&mut s, m);

    if let Some(spec) = m.spec {
        heading(&mut s, "Fix");
        fix_section(&mut s, spec, m);
        heading(&mut s, "Selftest");
        selftest_section(&mut s, spec, m);
    }

    heading(&mut s, "How to reproduce");
    let race = crate::emit_c::race::window(&first.repro.program).is_ok();
    let _ = writeln!(s, "  cd reproducers");
    let _ = writeln!(s, "  gcc -static -O1 -pthread -o repro \\\n      {}.c", first.name);
    let _ = writeln!(s, "  sudo ./repro     # root: swap, THP settings, move_pages of shared pages\n");
    let needs = if race {
        "It needs two NUMA nodes (qemu -numa node,nodeid=0 -numa node,nodeid=1 is enough). It prints \
         PTEDIFF-RACE lines: rounds run, rounds inside the migration window, and per kernel version the rounds \
         that broke what user space is owed."
    } else {
        "It prints what the kernel did at every step (PTEDIFF-LD, PTEDIFF-PM, PTEDIFF-PAGE) next to what each \
         kernel version is predicted to do (PTEDIFF-PREDICT) and what user space is owed (PTEDIFF-OWED)."
    };
    para(&mut s, needs, "");
    para(
        &mut s,
        "With ptediff (the commands that measured the tables): `ptediff kernel-check FILE` boots the four \
         kernels and prints what each did; `ptediff affected FILE` the model's answer per kernel version; \
         `ptediff kernel-test --kernel v7.3 --patch FIX FILE` builds a kernel without and with a fix and \
         prints what changed.",
        "",
    );
    while s.ends_with("\n\n") {
        s.pop();
    }
    debug_assert!(s.lines().all(|l| l.chars().count() <= MAIL_WIDTH));
    s
}

fn subject_of_file(c: &Case) -> String {
    let d = super::description(&c.text);
    let first = d.split(". ").next().unwrap_or(&d).trim_end_matches('.');
    let mut out = String::new();
    for w in first.split_whitespace() {
        if out.len() + w.len() + 1 > 60 {
            out.push_str(" ...");
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    format!("mm: {out}")
}

/// What a real kernel did, in words: a race reproducer's rounds, or the
/// contracts a deterministic one broke.
fn outcome(r: &KernelResult) -> String {
    if r.race.is_some() {
        return r.cell.clone();
    }
    if r.cell.starts_with("not realized") || r.cell.starts_with("error") || r.cell.starts_with("did not") {
        return r.cell.clone();
    }
    let matched = if r.cell == "MISMATCH" { "; matched no model" } else { "" };
    if r.breaks.is_empty() {
        format!("kept every contract{matched}")
    } else {
        format!("broke {}{matched}", r.breaks.join(", "))
    }
}

/// What the ops of `program` mean, for a reader who does not know ptediff.
fn legend(program: &crate::op::Program) -> String {
    use crate::op::OpKind;
    let mut kinds: Vec<OpKind> = program.ops.iter().map(|o| o.kind()).collect();
    kinds.sort();
    kinds.dedup();
    let mut parts =
        vec!["Pages are numbered within a 16-page area, processes p0 to p2; mmap(p0, A, N, PROT, TARGET) maps N \
         pages at page A of p0"
            .to_string()];
    for k in kinds {
        let what = match k {
            OpKind::Read | OpKind::Write => "read and write load and store one page",
            OpKind::ClearRefs => "clear_refs writes 4 to /proc/self/clear_refs",
            OpKind::Pageout => "pageout is MADV_PAGEOUT of one page (to zram swap for anonymous memory)",
            OpKind::Fork => "p1 = fork(p0) forks p0 into p1",
            OpKind::Migrate => "migrate moves the page to the other NUMA node (move_pages)",
            OpKind::MigrateStart | OpKind::MigrateFinish => {
                "migrate_start and migrate_finish are the two halves of one migration (try_to_migrate() \
                 and remove_migration_ptes()), which the C program realises by racing move_pages() and polling \
                 /proc/self/pagemap for the migration entry"
            }
            OpKind::Swapoff => "swapoff cycles the swap device",
            OpKind::UffdRegister | OpKind::UffdWp | OpKind::UffdUnwp => {
                "uffd_* register with and write-protect through a userfaultfd"
            }
            _ => continue,
        };
        if !parts.iter().any(|p| p == what) {
            parts.push(what.to_string());
        }
    }
    format!(
        "{}. At the end every page of every process is read, written once and checked against pagemap.",
        parts.join("; ")
    )
}

/// `6.1.192` of `6.1.192-3+base`.
fn upstream_version(v: &str) -> &str {
    v.split(['-', '+']).next().unwrap_or(v)
}

/// A line of the table, wrapped under its third column.
fn row(s: &mut String, first: &str, second: &str, rest: &str) {
    let line = format!("{first:<8}{second:<14}{rest}");
    let indent = " ".repeat(25);
    let o = textwrap::Options::new(72)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .initial_indent("   ")
        .subsequent_indent(&indent);
    for l in textwrap::wrap(line.trim_end(), o) {
        let _ = writeln!(s, "{}", l.trim_end());
    }
}

/// The kernels kernel-test built for a fix on profile `k`: (without, with).
fn built_pair(spec: Option<&Spec>, k: Kernel) -> Option<(String, String)> {
    let Some(Spec { fix: Fix::Patch { dir, with }, .. }) = spec else { return None };
    Some(match with {
        Some(w) => (format!("{}+{w}", k.name()), format!("{}+{w}.{dir}", k.name())),
        None => (format!("{}+base", k.name()), format!("{}+{dir}", k.name())),
    })
}

/// Per case, one line per profile: the model's answer and the real kernel's,
/// then the kernels built without and with the fix.
fn affected_table(s: &mut String, m: &MailInput) {
    let db = ResultsDb::default();
    for c in m.cases {
        let label = if c.label.is_empty() { String::new() } else { format!(": {}", c.label) };
        para(s, &format!("{}. {}{label}", c.letter, c.name), "");
        let rows: Vec<Affected> = affected::affected(&c.path, &c.repro, &db);
        let hash = program_hash(&c.repro.program);
        let found = rows.iter().find(|r| r.kind != "none").or(rows.first());
        row(s, "kernel", "model", "real kernel (Debian's, under QEMU)");
        for k in Kernel::ALL {
            let open = found.and_then(|r| r.profiles.iter().find(|p| p.profile == k.name())).is_some_and(|p| p.open);
            let model = if open { "affected" } else { "not affected" };
            let real = match m.inputs.measured.result(&c.name, &hash, k.name()) {
                Some(r) if r.matches_own_profile => format!("{}: {}", upstream_version(&r.kernel.version), outcome(r)),
                Some(r) => {
                    format!("{}: CONTRADICTS THE MODEL: {}", upstream_version(&r.kernel.version), outcome(r))
                }
                None if k == Kernel::V61 => "model only (no v6.1 release kernel here)".into(),
                None => "model only (not run)".into(),
            };
            row(s, k.name(), model, &real);
        }
        let mut built = false;
        for k in Kernel::ALL {
            let Some((without, with)) = built_pair(m.spec, k) else { continue };
            let (Some(a), Some(b)) =
                (m.inputs.measured.result(&c.name, &hash, &without), m.inputs.measured.result(&c.name, &hash, &with))
            else {
                continue;
            };
            if !built {
                s.push('\n');
                row(s, "kernel", "", "built from the same source: without the fix / with it (kernel-test)");
                built = true;
            }
            let v = upstream_version(&a.kernel.version);
            row(s, k.name(), "", &format!("{v}: {} / {}", outcome(a), outcome(b)));
        }
        s.push('\n');
    }
    let hook = match m.spec {
        Some(Spec { fix: Fix::Patch { with: Some(w), .. }, .. }) => {
            format!(" The built kernels have the {w} test hook, which holds every migration of the test's pages open for 20 ms.")
        }
        _ => String::new(),
    };
    para(
        s,
        &format!(
            "\"affected\": the model of that kernel version breaks what user space is owed. The real kernel's \
             cell is what it did: the contracts it broke ({}; process, page, where), or for a race reproducer the rounds that broke one of those that ran \
             inside the migration window (\"held\": a test hook kept the window open; \"batch\", \"plain\": \
             the syscalls alone; \"none ... as predicted\": the model says the kernel keeps it).{hook}",
            crate::judge::contracts::Contract::legend()
        ),
        "",
    );
}

fn fix_section(s: &mut String, spec: &Spec, m: &MailInput) {
    match spec.fix {
        Fix::Patch { dir, with } => {
            let profiles = super::specs::fix_profiles(spec, &m.inputs.root);
            let names: Vec<&str> = profiles.iter().map(|k| k.name()).collect();
            para(
                s,
                &format!(
                    "patches/<kernel>/0001-*.patch, for {} (the same change written against each tree's \
                     helpers). kernel-test built each kernel from the same Debian source without and with \
                     it{}, ran every ptediff reproducer on both and compared: the cells above marked \
                     +{dir} are the patched kernels.",
                    names.join(", "),
                    with.map_or(String::new(), |w| format!(" (both with the {w} test hook)"))
                ),
                "",
            );
        }
        Fix::Upstream { commit, note } => {
            para(s, &format!("The fix is {commit}. {note}"), "");
        }
        Fix::None { needs } => para(s, needs, ""),
    }
}

fn selftest_section(s: &mut String, spec: &Spec, m: &MailInput) {
    for st in spec.selftests {
        let runs = m.inputs.measured.selftest.get(spec.name).and_then(|r| r.get(st.name));
        let case = m.cases.iter().find(|c| c.name == st.case);
        let needs: Vec<&str> = case
            .map(|c| crate::emit_c::kselftest::needs(&c.repro.program).iter().map(|n| n.name()).collect())
            .unwrap_or_default();
        let mut text = format!(
            "selftest/{}.c (and in the patches, tools/testing/selftests/mm/{}.c): generated from case {}, \
             kselftest.h TAP output; it fails where the kernel breaks what user space is owed, passes where \
             it does not, and skips without {}.",
            st.name,
            st.name,
            case.map_or('?', |c| c.letter),
            or_list(&needs)
        );
        match runs {
            None => text.push_str(" Not run on a real kernel yet."),
            Some(_) => text.push_str(" Measured, one QEMU boot per kernel (scripts/report-check.sh):"),
        }
        para(s, &text, "");
        for res in [TestResult::Fail, TestResult::Pass, TestResult::Skip] {
            let on: Vec<&str> =
                runs.into_iter().flatten().filter(|(_, r)| r.result == res).map(|(k, _)| k.as_str()).collect();
            if !on.is_empty() {
                let o = textwrap::Options::new(MAIL_WIDTH)
                    .break_words(false)
                    .word_splitter(textwrap::WordSplitter::NoHyphenation)
                    .initial_indent("  ")
                    .subsequent_indent("        ");
                for l in textwrap::wrap(&format!("{:<6}{}", res.name(), on.join(", ")), o) {
                    let _ = writeln!(s, "{}", l.trim_end());
                }
            }
        }
        if runs.is_some() {
            s.push('\n');
        }
    }
    if let Some(checks) = m.inputs.measured.patch_checks.get(spec.name) {
        for (file, per) in checks {
            for (k, c) in per {
                let built = match c.builds {
                    Some(true) => "; the selftest builds with the tree's Makefile",
                    Some(false) => "; the selftest does NOT build",
                    None => "",
                };
                let base = file.rsplit('/').next().unwrap_or(file);
                let text = format!("{k}: {base} (on {}): checkpatch.pl --strict: {}{built}", c.source, c.checkpatch);
                let o = textwrap::Options::new(MAIL_WIDTH)
                    .break_words(false)
                    .word_splitter(textwrap::WordSplitter::NoHyphenation)
                    .initial_indent("  ")
                    .subsequent_indent("    ");
                for l in textwrap::wrap(&text, o) {
                    let _ = writeln!(s, "{}", l.trim_end());
                }
            }
        }
    }
}

/// `a, b or c`.
pub(crate) fn or_list(items: &[&str]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
