"""The names the code defines once (crates/event/src/names.rs), read from
scripts/names.env, which a test keeps equal to the code's: topics, consumer
groups, tables, measurements and default ports."""

from pathlib import Path


def _read() -> dict[str, str]:
    names = {}
    for line in (Path(__file__).with_name("names.env")).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            names[key.strip()] = value.strip()
    return names


NAMES = _read()
EVENTS_TOPIC = NAMES["EVENTS_TOPIC"]
DEAD_LETTER_TOPIC = NAMES["DEAD_LETTER_TOPIC"]
EVENT_API_PORT = int(NAMES["DEFAULT_EVENT_API_PORT"])
AGGREGATOR_PORT = int(NAMES["DEFAULT_AGGREGATOR_PORT"])
CONSUMER_HIGH_PORT = int(NAMES["DEFAULT_CONSUMER_HIGH_PORT"])
CONSUMER_LOW_PORT = int(NAMES["DEFAULT_CONSUMER_LOW_PORT"])
