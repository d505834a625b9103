"""A database that cannot be reached is one error line naming the remote, the transport's
own reason and the remedy - nothing printed beside it (ovsdbapp logs the failed stream;
the CLI's "one line per error" rule would break on python's last-resort log handler)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ovsdbapp.schema.open_vswitch import impl_idl as ovs_impl

from cutover.errors import OvsdbError
from cutover.ovsdb.connection import open_api
from cutover.ovsdb.vswitch import OVS_TABLES


def test_a_missing_socket_is_one_line_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    remote = f"unix:{tmp_path}/nothing-listens.sock"
    with pytest.raises(OvsdbError) as e:
        open_api(ovs_impl.OvsdbIdl, remote, "Open_vSwitch", OVS_TABLES, timeout_s=2)
    text = str(e.value)
    assert remote in text and "No such file or directory" in text
    assert "reachable from here" in text
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")
    # ovsdbapp's record went into the message, not on to the root logger (where pytest's
    # handler catches it here, and python's last-resort handler prints it in the CLI)
    assert [r for r in caplog.records if r.name.startswith("ovsdbapp")] == []
