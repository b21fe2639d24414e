import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { throughput } from '../view-model';
import type { Stats } from '../wire';

/**
 * Messages per minute over the last hour (uPlot: small, canvas-drawn, no dependencies). The
 * chart is an image to assistive technology; its summary sentence carries the numbers.
 */
export function createThroughputChart(container: HTMLElement, summary: HTMLElement) {
  let chart: uPlot | undefined;
  const width = (): number => Math.max(280, container.clientWidth);

  return {
    render(stats: Stats): void {
      const data = throughput(stats);
      summary.textContent = data.summary;
      const values: uPlot.AlignedData = [data.times, data.total, data.delivered, data.failed];
      if (chart) {
        chart.setData(values);
        return;
      }
      container.replaceChildren();
      chart = new uPlot(
        {
          width: width(),
          height: 220,
          scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
          series: [
            {},
            { label: 'All', stroke: '#1f4e8c', width: 2 },
            { label: 'Delivered', stroke: '#1d7a3c', width: 2 },
            { label: 'Not delivered', stroke: '#b3261e', width: 2 },
          ],
          axes: [{}, { label: 'per minute' }],
        },
        values,
        container,
      );
      window.addEventListener('resize', () => chart?.setSize({ width: width(), height: 220 }));
    },
  };
}
