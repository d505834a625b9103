"""Hold experiment: release -> STOP of a held QEMU copy, per variant (hypervisor only)."""
import dataclasses, json, sys, time, threading
from cutover.lab import Lab, LabTopology
from cutover.guest.qemu import QemuHypervisor
from cutover.guest.qmp import event_ms, is_event

variant = sys.argv[1]; n = int(sys.argv[2]); wait_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.3
lab = Lab(LabTopology(prefix="hl"))
site = lab.site()
vm = site.vm_named("vm1")
import os; cur = os.environ.get("SRC", vm.chassis)
others = [c.name for c in site.chassis if c.name not in (cur,)][:2]
hv = QemuHypervisor(site, max_bandwidth_mib=float(os.environ["MAXBW"]) if os.environ.get("MAXBW") else None)
out = []
for i in range(n):
    dst_name = "hv2" if cur == "hv1" else "hv1"
    v = dataclasses.replace(vm, chassis=cur)
    dst = site.chassis_named(dst_name)
    hv.prepare_destination(v, dst)
    t0 = time.time()
    hv.start_copy(v, dst, hold_convergence=True)
    hv.hold_to_last_pass(v)
    t_last = time.time()
    # simulate the pre-activation: keep watching while waiting
    import random; ev = threading.Event(); threading.Timer(wait_s + random.random() * 0.1, ev.set).start()
    hv.keep_held(v, ev, 30)
    src = hv._monitor(v, v.chassis)
    info0 = src.cmd("query-migrate")
    t_rel = time.time() * 1e3
    hv.release_convergence(v)
    log = []
    while True:
        info = src.cmd("query-migrate")
        ram = info.get("ram") or {}
        log.append((round(time.time()*1e3 - t_rel, 1), info.get("status"), ram.get("remaining"), ram.get("normal"), ram.get("duplicate"), ram.get("dirty-sync-count")))
        if info.get("status") != "active":
            break
        time.sleep(0.002)
    hv.wait_copied(v, dst)
    stop = hv.pause_source(v)
    hv.switchover(v, dst)
    fig = hv.last_migration(v)
    hv.finish_source(v)
    run = hv._runs.get(v.name, {})
    rec = dict(i=i, release_to_stop=round(stop - t_rel, 1), pause=fig.get("guest_pause_ms"),
               trickle_at=fig.get("trickle_at_ms"), reserve=fig.get("trickle_reserve_mb"),
               held=fig.get("convergence_held_ms"), xfer=fig.get("ram_transferred_mb"),
               syncs=fig.get("dirty_sync_count"), downtime=fig.get("downtime_ms"),
               rem_at_release=(info0.get("ram") or {}).get("remaining"),
               extra={k: fig.get(k) for k in fig if k.startswith(("hold", "tail", "release", "trickle"))})
    print(json.dumps(rec)); ch=[l for l in log if l[2]!=log[0][2]]
    print("   first", log[0], "wake", ch[:1], "end", log[-2:], flush=True)
    out.append(rec)
    cur = dst_name
    time.sleep(0.5)
# leave the VM where the site says it is
site_vm = site.vm_named("vm1").chassis
if cur != site_vm:
    print("NOTE: vm1 now runs on", cur, "site says", site_vm)
hv.close()
json.dump(out, open(f"/tmp/hold-exp/{variant}.json", "w"), indent=1)
import statistics
print(variant, "median release->STOP", statistics.median(r["release_to_stop"] for r in out), "pause", statistics.median(r["pause"] for r in out))
