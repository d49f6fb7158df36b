/**
 * Process bookkeeping for the bench: CPU time and peak RSS from /proc, and a
 * registry of every process the bench started so that all of them are
 * killed at the end, on errors and on SIGINT/SIGTERM.
 *
 * @module
 */

import type { Running } from "../tests/helpers.ts";

let clockTicks = 100;

/** Reads the kernel's clock ticks per second (`getconf CLK_TCK`), once. */
export async function initClockTicks(): Promise<void> {
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    if (value > 0) clockTicks = value;
  } catch {
    // keep 100, Linux's usual value
  }
}

/** CPU seconds (user + system, all threads) a process has used, or NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return NaN;
  }
}

/** Peak resident set size (VmHWM) in bytes, or NaN once it is gone. */
export function peakRss(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = status.match(/^VmHWM:\s+(\d+) kB/m);
    return match ? Number(match[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

const live = new Set<Running>();

/** Registers a process for the final clean-up; returns it. */
export function track<T extends Running>(running: T): T {
  live.add(running);
  running.child.status.then(() => live.delete(running));
  return running;
}

/** Stops one process: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(running: Running, graceMs = 5000): Promise<void> {
  running.kill("SIGTERM");
  try {
    await running.wait(graceMs);
  } catch {
    running.kill("SIGKILL");
    await running.child.status;
  }
  live.delete(running);
}

/** Children of this process by /proc, in case one was started but never registered. */
function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === Deno.pid) pids.push(Number(entry.name));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Kills every process the bench started (registered ones, then any other child). */
export async function killAll(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const running of live) {
    running.kill("SIGKILL");
    waits.push(running.child.status);
  }
  await Promise.allSettled(waits);
  live.clear();
  for (const pid of childPids()) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
