import { usePublicListener } from '../helpers/public-listener';
import { exchangeRaw, expectErrorShape } from '../helpers/raw-http';

/**
 * CONNECT (authority-form target), as a scanner or a misconfigured forward proxy sends it.
 * Node emits 'connect' for it and, with no listener, destroys the socket without a byte: the
 * client (or the load balancer in front, which then answers 502) got no answer at all. Every
 * other method the service does not take gets a 4xx in the documented error shape (DESIGN §2),
 * and so does CONNECT: 405.
 */

const listener = usePublicListener({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });

test('When a client sends CONNECT, then it is answered a 4xx in the service’s error shape, not dropped without an answer', async () => {
  const answer = await exchangeRaw(
    listener.port,
    'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n',
  );
  expectErrorShape(answer, 405, 'method_not_allowed');
});
