"""Turn off transmit checksum and segmentation offloads of a device (run inside its netns).

Why: an SSL lab's central node talks TCP from the underlay namespace's kernel to each
chassis' kernel *through* that chassis' userspace OVS (``br-phy``, netdev datapath). The
kernel hands a bridge device partial checksums and 64 KiB TSO super-frames, which the
userspace datapath receives as they are (AF_PACKET): the chassis then drops every segment
with a bad checksum or a frame larger than the MTU, and the TLS sessions stall after the
TCP handshake (measured: "no response to inactivity probe" on both sides). With the
offloads off the kernel finishes each frame itself. pyroute2's ethtool (a dependency of
os-vif) does what ``ethtool -K DEV tx off tso off gso off sg off`` would.

Usage: ``python -m cutover.lab.offload DEV...`` (in the namespace of the devices).
"""

from __future__ import annotations

import sys

from pyroute2.ethtool import Ethtool

OFF = ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-scatter-gather",
       "tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-generic-segmentation")


def offloads_off(device: str) -> None:
    ethtool = Ethtool()
    try:
        features = ethtool.get_features(device)
        for name in OFF:
            if name in features.features:
                features.features[name].enable = False
        ethtool.set_features(device, features)
    finally:
        ethtool.close()


if __name__ == "__main__":
    for dev in sys.argv[1:]:
        offloads_off(dev)
