"""``python -m simgate.cli`` = ``simgate``."""

from simgate.cli import main

main()
