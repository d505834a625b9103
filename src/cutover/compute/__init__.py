"""nova-compute + os-vif's role: plug VIFs on a hypervisor, describe them to libvirt."""
