"""MQTT 5 reason codes EMQX 5.8.6 answers clients with (apps/emqx/src/emqx_reason_codes.erl:67-68
name/1, mapped to MQTT 3.1.1 CONNACK codes 4 and 5 by compat/2 at :166-167)."""

from __future__ import annotations

NO_MATCHING_SUBSCRIBERS = 0x10  # a PUBACK: delivered to nobody (emqx_channel.erl:786-790)
BAD_USERNAME_OR_PASSWORD = 0x86  # no password, or the wrong one
NOT_AUTHORIZED = 0x87  # no such client (the authenticator ignores it), or a topic the rules deny
