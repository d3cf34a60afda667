"""Child of test_pysnmp.py: pysnmp 4.4's asyncore transport, agent or manager.

    python pysnmp_child.py TARGET agent            (prints its UDP port, serves)
    python pysnmp_child.py TARGET manager PORT REPORT

TARGET is ``reference`` (the interpreter's asyncore, or pyasyncore on
3.12+) or ``cython`` / ``python`` (asynchat_core's builds, installed before
pysnmp is imported).  pysnmp's carrier is an ``asyncore.dispatcher`` on a
UDP socket in a map of its own, driven by ``loop(use_poll=True, count=1)``
between timer ticks.  The agent is pysnmp's own command responder (its
built-in SNMPv2-MIB), SNMPv2c community ``public``; the manager makes GET,
GETNEXT walks, GETBULK, a GET of a missing object and a GET to a port
nobody serves (timers and retries), and writes what it got to REPORT.
The agent ends itself after 60 seconds whatever happens.
"""
# pysnmp 4.4 reads importlib.util and importlib.machinery without importing
# them (newer Pythons no longer import them at start-up)
import importlib.machinery  # noqa: F401
import importlib.util  # noqa: F401
import json
import os
import socket
import sys
import threading
import warnings

TARGET, ROLE = sys.argv[1], sys.argv[2]

if TARGET != "reference":
    import asynchat_core

    asynchat_core.install()

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import asyncore  # noqa: F401  (what the install gives pysnmp)

    from pysnmp.carrier.asyncore import base as carrier_base
    from pysnmp.carrier.asyncore.dgram import udp

# values that change between runs (uptime): compared by type only
VOLATILE = ("1.3.6.1.2.1.1.3.0",)


def agent():
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import cmdrsp, context

    threading.Timer(60.0, os._exit, (3,)).start()  # bounded, whatever the parent does
    snmp = engine.SnmpEngine()
    transport = udp.UdpTransport().openServerMode(("127.0.0.1", 0))
    config.addTransport(snmp, udp.domainName, transport)
    config.addV1System(snmp, "area", "public")
    config.addVacmUser(snmp, 2, "area", "noAuthNoPriv", (1, 3, 6), (1, 3, 6))
    ctx = context.SnmpContext(snmp)
    for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder,
                      cmdrsp.BulkCommandResponder):
        responder(snmp, ctx)
    print(transport.socket.getsockname()[1], flush=True)
    snmp.transportDispatcher.jobStarted(1)
    snmp.transportDispatcher.runDispatcher()


def _rows(var_binds):
    rows = []
    for name, value in var_binds:
        oid = str(name)
        shown = type(value).__name__ if oid in VOLATILE else value.prettyPrint()
        rows.append([oid, type(value).__name__, shown])
    return rows


def manager(port, report_path):
    from pysnmp import hlapi

    snmp = hlapi.SnmpEngine()
    community = hlapi.CommunityData("public")
    target = hlapi.UdpTransportTarget(("127.0.0.1", port), timeout=2, retries=1)
    ctx = hlapi.ContextData()
    report = {"target": TARGET, "asyncore": carrier_base.asyncore.__name__,
              "implementation": (asynchat_core.IMPLEMENTATION if TARGET != "reference"
                                 else None)}

    def one(iterator):
        error, status, index, var_binds = next(iterator)
        return [str(error) if error else None, str(status), int(index), _rows(var_binds)]

    report["get"] = one(hlapi.getCmd(
        snmp, community, target, ctx,
        hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.2.1.1.1.0")),
        hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.2.1.1.2.0"))))
    report["missing"] = one(hlapi.getCmd(
        snmp, community, target, ctx, hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.2.1.1.99.0"))))
    walk = []
    for error, status, index, var_binds in hlapi.nextCmd(
            snmp, community, target, ctx,
            hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.2.1.1")), lexicographicMode=False):
        walk.append([str(error) if error else None, str(status), _rows(var_binds)])
    report["walk"] = walk
    bulk = []
    for error, status, index, var_binds in hlapi.bulkCmd(
            snmp, community, target, ctx, 0, 8,
            hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.6.3.1")), lexicographicMode=False):
        bulk.append([str(error) if error else None, str(status), _rows(var_binds)])
    report["bulk"] = bulk
    # nobody serves this port: the timeouts and the retry run on the loop's timers
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as idle:
        idle.bind(("127.0.0.1", 0))
        dead = hlapi.UdpTransportTarget(("127.0.0.1", idle.getsockname()[1]),
                                        timeout=0.3, retries=1)
        report["dead"] = one(hlapi.getCmd(
            snmp, community, dead, ctx,
            hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.2.1.1.1.0"))))
    report["maps_left"] = len(snmp.transportDispatcher.getSocketMap())
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1)


if ROLE == "agent":
    agent()
else:
    manager(int(sys.argv[3]), sys.argv[4])
