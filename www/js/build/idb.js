// One IndexedDB object store, opened per operation: run(mode, fn) runs fn(store) in one
// transaction and resolves to the result of the request fn returns, once the transaction
// has committed.

export function idbStore(dbName, storeName, options = undefined) {
  const open = () =>
    new Promise((resolve, reject) => {
      const req = indexedDB.open(dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(storeName, options);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error || new Error("IndexedDB is not available"));
    });
  return async function run(mode, fn) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const t = db.transaction(storeName, mode);
      const req = fn(t.objectStore(storeName));
      t.oncomplete = () => {
        db.close();
        resolve(req?.result);
      };
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error("IndexedDB transaction aborted"));
    });
  };
}
