import dataclasses, sys, time
from cutover.lab import Lab, LabTopology
from cutover.guest.qemu import QemuHypervisor
lab = Lab(LabTopology(prefix="hl")); site = lab.site()
vm = site.vm_named("vm1"); hv = QemuHypervisor(site)
cur = sys.argv[1]
v = dataclasses.replace(vm, chassis=cur); dst = site.chassis_named("hv2" if cur == "hv1" else "hv1")
hv.prepare_destination(v, dst); hv.start_copy(v, dst, hold_convergence=True); hv.hold_to_last_pass(v)
src = hv._monitor(v, v.chassis)
t0 = time.time(); last = None; changes = []
while time.time() - t0 < 0.6:
    ram = src.cmd("query-migrate")["ram"]
    x = (ram["transferred"], ram["remaining"])
    if x != last: changes.append((round((time.time()-t0)*1e3,1), x[0], x[1])); last = x
    time.sleep(0.001)
print("trickle changes:", changes)
t_rel = time.time(); hv.release_convergence(v)
while True:
    info = src.cmd("query-migrate"); ram = info.get("ram") or {}
    if info["status"] != "active" or ram.get("transferred") != last[0]:
        print("release at", round((t_rel-t0)*1e3,1), "first change", round((time.time()-t0)*1e3,1), info["status"]); break
    time.sleep(0.001)
hv.wait_copied(v, dst); hv.pause_source(v); hv.switchover(v, dst); hv.finish_source(v); hv.close()
