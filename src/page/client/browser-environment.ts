import type { Environment } from './schedule';

/** The real tab: the Page Visibility API and the browser's online/offline events. */
export function browserEnvironment(): Environment {
  return {
    hidden: () => document.visibilityState === 'hidden',
    online: () => navigator.onLine,
    onChange(listener) {
      document.addEventListener('visibilitychange', listener);
      window.addEventListener('online', listener);
      window.addEventListener('offline', listener);
      return () => {
        document.removeEventListener('visibilitychange', listener);
        window.removeEventListener('online', listener);
        window.removeEventListener('offline', listener);
      };
    },
  };
}
