// SPDX-License-Identifier: GPL-2.0
/*
 * ptediff_window: hold a page migration open between unmap and restore.
 *
 * A kprobe on rmap_walk() (in mm/rmap.c, called from mm/migrate.c, so never
 * inlined there) busy-waits delay_ms when the walk is the restore of
 * migration entries (its rmap_one is remove_migration_pte) and the current
 * task belongs to thread group `tgid`. No page-table or rmap lock is held at
 * that point: only the folio lock. Parameters, writable at run time:
 *   /sys/module/ptediff_window/parameters/{tgid,delay_ms}; holds counts waits.
 */
#include <linux/module.h>
#include <linux/kprobes.h>
#include <linux/delay.h>
#include <linux/sched.h>
#include <linux/rmap.h>

static int tgid = -1;
module_param(tgid, int, 0644);
static uint delay_ms;
module_param(delay_ms, uint, 0644);
static uint holds;
module_param(holds, uint, 0444);

static unsigned long restore_fn;

static int hold(struct kprobe *p, struct pt_regs *regs)
{
	struct rmap_walk_control *rwc = (struct rmap_walk_control *)regs->si;
	unsigned long fn = (unsigned long)rwc->rmap_one;
	uint ms = READ_ONCE(delay_ms);

	/* kprobe addresses skip an ENDBR; the callback pointer does not */
	if (ms && current->tgid == READ_ONCE(tgid) && fn <= restore_fn && fn + 16 > restore_fn) {
		WRITE_ONCE(holds, holds + 1);
		mdelay(ms);
	}
	return 0;
}

static struct kprobe kp = { .symbol_name = "rmap_walk", .pre_handler = hold };

static int __init window_init(void)
{
	struct kprobe find = { .symbol_name = "remove_migration_pte" };
	int ret = register_kprobe(&find);

	if (ret) {
		pr_err("ptediff_window: no remove_migration_pte: %d\n", ret);
		return ret;
	}
	restore_fn = (unsigned long)find.addr;
	unregister_kprobe(&find);
	ret = register_kprobe(&kp);
	pr_info("ptediff_window: kprobe on rmap_walk: %d\n", ret);
	return ret;
}

static void __exit window_exit(void)
{
	unregister_kprobe(&kp);
}

module_init(window_init);
module_exit(window_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ptediff: hold migration between unmap and restore (test only)");
