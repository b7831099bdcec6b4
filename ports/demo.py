"""The demo deployment of `make run` and of the tests: every role, every host on loopback."""

from .choices import Feature

# Every host on loopback: probes of the demo may only ever reach this machine.
DEMO_DEPLOYMENT = {
    "name": "Demo (loopback)",
    "description": "Two appliances and every role, all on loopback addresses.",
    "features": Feature.values,
    "appliances": [
        {
            "hostname": "esa1.demo.test",
            "c_address": "127.0.10.1",
            "p1_address": "127.0.11.1",
            "p2_address": "127.0.12.1",
        },
        {
            "hostname": "esa2.demo.test",
            "c_address": "127.0.10.2",
            "p1_address": "127.0.11.2",
            "p2_address": "127.0.12.2",
        },
    ],
    "hosts": [
        {"role": "security_manager", "name": "fsm", "address": "127.0.20.1"},
        {"role": "log_server", "name": "logserver", "address": "127.0.20.2"},
        {"role": "sql_server", "name": "sql", "address": "127.0.20.3"},
        {"role": "dlp_server", "name": "dlp", "address": "127.0.20.4"},
        {"role": "hybrid_service", "name": "hybrid", "address": "127.0.20.5"},
        {"role": "filtering_service", "name": "filtering", "address": "127.0.20.6"},
        {"role": "linking_service", "name": "linking", "address": "127.0.20.7"},
        {"role": "ldap", "name": "ldap", "address": "127.0.20.8"},
        {"role": "dns", "name": "dns", "address": "127.0.20.9"},
        {"role": "snmp_trap", "name": "snmp", "address": "127.0.20.10"},
    ],
    "peer_networks": [
        {"role": "end_users", "name": "Office users", "network": "127.0.30.0/24"},
        {"role": "mail_senders", "name": "Internet mail", "network": "any"},
    ],
}
