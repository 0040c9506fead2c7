"""Bundle entry point: the desktop app (``dsage``), any ``dsage`` subcommand when given one, and the
``-m dsage_core...`` forms the worker uses to start its children (there is no separate Python)."""
import sys


def dispatch(default: str) -> int:
    args = sys.argv[1:]
    if args[:2] == ["-m", "dsage_core.worker.child"]:
        from dsage_core.worker.child import main as child
        child()
        return 0
    if args[:2] == ["-m", "dsage_core"]:
        sys.argv = [sys.argv[0]] + args[2:]
        args = sys.argv[1:]
        default = "cli"
    if default == "cli" or (args and (not args[0].startswith("-") or args[0] == "--version")):
        from dsage_core.cli import main
        return main(args)
    if default == "tray":
        from dsage_gui.tray.__main__ import main as tray
        return tray(args)
    from dsage_gui.__main__ import main as gui
    return gui(args)


if __name__ == "__main__":
    sys.exit(dispatch("app"))
