// Options several commands share, defined once.
import { Option } from "commander";
import { FILE_TOOLS_MODES } from "../sandbox/types.js";

/** microvm only: where read_file, write_file, list_directory and search run (docs/security.md). */
export const fileToolsOption = (): Option =>
  new Option(
    "--file-tools <mode>",
    "microvm: host = the four file tools run beside the VM in a namespace jail (default), guest = inside the VM through 9p",
  ).choices([...FILE_TOOLS_MODES]);
