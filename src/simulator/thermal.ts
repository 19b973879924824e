/**
 * Heat as a first-order system: the SoC temperature moves toward a target (ambient when idle,
 * up to `maxC` under full load) with time constant `heatTauS` when rising and `coolTauS` when
 * falling, in simulated seconds. A test or a demo may pin the temperature to a value.
 */
import { SimClock, monoNow } from './clock.js';
import type { ThermalProfile } from './profiles.js';

export class ThermalModel {
  private celsius: number;
  private pinned: number | null = null;
  private last = monoNow();

  constructor(
    private readonly profile: ThermalProfile,
    private readonly clock: SimClock,
    initialC?: number,
  ) {
    this.celsius = initialC ?? profile.ambientC;
  }

  /** Advance to now, `load` (0..1) having held since the previous step; returns Celsius. */
  step(load: number, now = monoNow()): number {
    const dtS = this.clock.toSim(Math.max(0, now - this.last)) / 1000;
    this.last = now;
    if (this.pinned !== null) {
      this.celsius = this.pinned;
      return this.celsius;
    }
    const { ambientC, maxC, heatTauS, coolTauS } = this.profile;
    const target = ambientC + (maxC - ambientC) * Math.min(1, Math.max(0, load));
    const tau = target > this.celsius ? heatTauS : coolTauS;
    this.celsius = target + (this.celsius - target) * Math.exp(-dtS / tau);
    return this.celsius;
  }

  get temperature(): number {
    return this.celsius;
  }

  get isPinned(): boolean {
    return this.pinned !== null;
  }

  /**
   * Set the temperature now. With `hold` (the default) it stays there until released with
   * `set(null)`; without, the model carries on from the new value.
   */
  set(celsius: number | null, hold = true): void {
    if (celsius === null) {
      this.pinned = null;
      return;
    }
    if (!Number.isFinite(celsius)) throw new Error(`temperature must be a number, got ${celsius}`);
    this.celsius = celsius;
    this.pinned = hold ? celsius : null;
  }

  /** Speed multiplier for generation: below 1 while throttling. */
  rateFactor(): number {
    return this.celsius >= this.profile.throttleC ? this.profile.throttleFactor : 1;
  }
}
