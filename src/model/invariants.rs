//! Model invariants that hold after every step (checked by the property tests).

use super::types::*;

/// Check the model's structural invariants; the error names the first violation.
///
/// - VMAs are sorted, non-overlapping and non-empty.
/// - No entry lies outside a VMA.
/// - A writable PTE of an anon folio implies PageAnonExclusive (the kernel's
///   VM_BUG_ONs in wp_page_reuse / do_swap_page / remove_migration_pmd).
/// - A folio's mapcount equals the present PTEs mapping it.
/// - A swap slot's count equals the swap PTEs naming it; a swap-cache folio and its
///   slot point at each other.
/// - A page-cache folio is where its file's cache says it is.
/// - A huge PMD lies inside one VMA and holds one entry: its pages agree on the
///   entry and its bits and name the pages of one large folio in order; a PMD
///   is never both huge and a PTE table.
pub fn check_invariants(s: &State) -> Result<(), String> {
    let mut maps = [0u32; MAX_FOLIOS];
    let mut swaps = [0u32; MAX_SLOTS];
    for (p, mm) in s.procs.iter().enumerate() {
        if !mm.alive {
            if mm.vmas.is_empty() && mm.pt.iter().all(|e| e.is_none()) {
                continue;
            }
            return Err(format!("dead process p{p} still has VMAs or PTEs"));
        }
        for w in mm.vmas.windows(2) {
            if w[0].end > w[1].start {
                return Err(format!(
                    "p{p}: VMAs [{}, {}) and [{}, {}) overlap or are unsorted",
                    w[0].start, w[0].end, w[1].start, w[1].end
                ));
            }
        }
        for v in &mm.vmas {
            if v.start >= v.end || v.end as usize > NPAGES {
                return Err(format!("p{p}: bad VMA [{}, {})", v.start, v.end));
            }
        }
        for g in 0..NPMDS as u8 {
            if mm.huge & (1 << g) != 0 {
                check_huge_pmd(s, mm, g).map_err(|e| format!("p{p} PMD {g}: {e}"))?;
            }
        }
        for (a, e) in mm.pt.iter().enumerate() {
            if e.is_none() {
                continue;
            }
            let Some(v) = mm.vma(a as u8) else {
                return Err(format!("p{p} page {a}: {e:?} outside any VMA"));
            };
            match *e {
                Entry::Present { bits, folio } if folio != ZERO_PAGE => {
                    let fo = s.folio(folio);
                    if fo.kind == FolioKind::Free {
                        return Err(format!("p{p} page {a}: maps free folio #{folio}"));
                    }
                    if bits.contains(PteBits::W) && fo.is_anon() && !fo.flags.contains(FolioFlags::ANON_EXCLUSIVE) {
                        return Err(format!("p{p} page {a}: writable PTE of a non-exclusive anon folio #{folio}"));
                    }
                    if bits.contains(PteBits::W) && !v.flags.contains(VmFlags::WRITE) {
                        return Err(format!("p{p} page {a}: writable PTE in a VMA without VM_WRITE"));
                    }
                    maps[folio as usize] += 1;
                }
                Entry::Present { bits, .. } if bits.contains(PteBits::W) => {
                    return Err(format!("p{p} page {a}: writable zero-page PTE"));
                }
                Entry::Swap { slot, .. } => swaps[slot as usize] += 1,
                Entry::Migration { folio, .. } if !s.is_migrating(folio) => {
                    return Err(format!("p{p} page {a}: migration entry for folio #{folio} that is not migrating"));
                }
                _ => {}
            }
        }
    }
    for (i, fo) in s.folios.iter().enumerate() {
        if fo.kind == FolioKind::Free {
            continue;
        }
        if fo.mapcount as u32 != maps[i] {
            return Err(format!("folio #{i}: mapcount {} but {} PTEs map it", fo.mapcount, maps[i]));
        }
        let head = s.folio_head(i as FolioId);
        let pending = s.pending.iter().any(|m| m.new == head || m.old == head);
        let large_live = s.is_large(i as FolioId) && s.large_folio_referenced(head);
        if s.tail_maps(i as FolioId) > 0 && !(s.is_large(i as FolioId) && head == i as FolioId) {
            return Err(format!("folio #{i}: unmodelled pages map it, but it is not a large folio's head"));
        }
        if fo.is_anon() && fo.mapcount == 0 && !pending && !large_live && !fo.flags.contains(FolioFlags::SWAPCACHE) {
            return Err(format!("anon folio #{i} is mapped nowhere and not in the swap cache (leaked)"));
        }
        if fo.flags.contains(FolioFlags::SWAPCACHE) && s.slots[fo.slot as usize].folio != i as FolioId {
            return Err(format!("folio #{i}: in the swap cache at slot {} which does not point back", fo.slot));
        }
        if let FolioKind::File { file, index } = fo.kind {
            let cached = s.files[file as usize].cache[index as usize] == i as FolioId;
            if !cached && !pending {
                return Err(format!("folio #{i}: file {file} index {index} is not in the page cache"));
            }
        }
    }
    for (i, sl) in s.slots.iter().enumerate() {
        if sl.count as u32 != swaps[i] {
            return Err(format!("swap slot {i}: count {} but {} swap PTEs", sl.count, swaps[i]));
        }
    }
    Ok(())
}

/// The huge PMD `g` of `mm` (see [`check_invariants`]).
fn check_huge_pmd(s: &State, mm: &Mm, g: u8) -> Result<(), String> {
    let a = g * HPAGE_PMD_NR;
    let e = a + HPAGE_PMD_NR;
    if mm.ptable & (1 << g) != 0 {
        return Err("huge and a PTE table at once".into());
    }
    if mm.vma(a).is_none_or(|v| v.end < e) {
        return Err("not inside one VMA".into());
    }
    // The entry of page `i` of the PMD, as the first one says it must be.
    let first = mm.pt[a as usize];
    let (head, page_i): (FolioId, &dyn Fn(u8) -> Entry) = match first {
        Entry::Present { bits, folio } if folio != ZERO_PAGE => {
            (folio, &move |i| Entry::Present { bits, folio: folio + i })
        }
        Entry::Migration { kind, bits, folio } => (folio, &move |i| Entry::Migration { kind, bits, folio: folio + i }),
        other => return Err(format!("entry {other:?} cannot be huge")),
    };
    if !s.is_large(head) || s.folio_head(head) != head {
        return Err(format!("folio #{head} is not the head of a large folio"));
    }
    for i in 1..HPAGE_PMD_NR {
        let want = page_i(i);
        if mm.pt[(a + i) as usize] != want {
            return Err(format!("page {} holds {:?}, the PMD says {want:?}", a + i, mm.pt[(a + i) as usize]));
        }
    }
    Ok(())
}
