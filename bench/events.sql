-- Fills table `events` (created by bench/run) with rows :first..:last of realistic-looking
-- event data: ids, timestamps, short strings and nested JSON objects, from generate_series,
-- random() and md5(). About 540 bytes of plain pg_dump output per row. Used by bench/run.
INSERT INTO events
SELECT i,
       ts,
       kind,
       uid,
       jsonb_build_object(
         'event_id', md5(i::text),
         'kind', kind,
         'received_at', to_char(ts + (random() * 2000) * interval '1 millisecond', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'user', jsonb_build_object(
           'id', uid,
           'name', 'user_' || substr(md5(uid::text), 1, 8),
           'email', substr(md5(uid::text), 9, 10) || '@example.com',
           'plan', (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + (uid % 4)]),
         'session', jsonb_build_object(
           'id', substr(md5(random()::text), 1, 16),
           'ip', (10 + (uid % 200)) || '.' || (uid % 256) || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int,
           'device', jsonb_build_object(
             'os', (ARRAY['ios', 'android', 'windows', 'macos', 'linux'])[1 + floor(random() * 5)::int],
             'browser', (ARRAY['chrome', 'safari', 'firefox', 'edge'])[1 + floor(random() * 4)::int],
             'screen', jsonb_build_array((ARRAY[1920, 1440, 390, 412, 2560])[1 + floor(random() * 5)::int],
                                         (ARRAY[1080, 900, 844, 915, 1440])[1 + floor(random() * 5)::int]))),
         'page', jsonb_build_object(
           'path', '/products/' || floor(random() * 5000)::int,
           'referrer', (ARRAY['https://www.google.com/', 'https://news.example.org/', '', 'https://t.co/' || substr(md5(random()::text), 1, 10)])[1 + floor(random() * 4)::int],
           'load_ms', floor(random() * 3000)::int),
         'amount', CASE WHEN kind = 'purchase' THEN round((random() * 500)::numeric, 2) END,
         'tags', to_jsonb(ARRAY['t' || (i % 13), 'campaign-' || (i % 97)]),
         'ok', random() > 0.02)
FROM (SELECT i,
             timestamptz '2024-01-01 00:00:00+00' + i * interval '250 milliseconds' AS ts,
             (ARRAY['page_view', 'page_view', 'page_view', 'click', 'click', 'search', 'add_to_cart', 'purchase', 'signup', 'logout'])[1 + floor(random() * 10)::int] AS kind,
             1 + floor(random() * 1000000)::int AS uid
      FROM generate_series(:first, :last) AS i) AS s;
